// Package tokencheck is DentiaPro's token check at the gateway: a Traefik middleware plugin,
// interpreted by Yaegi inside Traefik (a local plugin: no Go toolchain, no network at load).
//
// One plugin, three modes, one middleware each in gateway/traefik/dynamic/middlewares.yml:
//
//	verify   on the protected routers: a valid access token of an active tenant passes with
//	         X-User-Id, X-Tenant and X-Request-ID set on the forwarded request (client-sent
//	         copies deleted); anything else gets the DRF-shaped 401 or 503 from here.
//	health   on /health/: adds "checks": {"jwks": ...} to the edge's aggregate, and turns it
//	         503 while this gateway holds no signing key (no token could be verified).
//	metrics  on the internal entry point: the token checks by result and reason, in
//	         Prometheus text.
//
// It does what the edge's ForwardAuth endpoint did (gateway/README.md): keys from auth's JWKS,
// tenant status from the tenants service, verified tokens cached until their exp. Traefik
// builds one handler per router that uses a middleware and builds them again on every reload
// of the dynamic configuration, but interprets the plugin once per process: keys, caches and
// counters are package state, shared by every handler with the same settings (checkerFor).
package tokencheck

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

const (
	modeVerify  = "verify"
	modeHealth  = "health"
	modeMetrics = "metrics"

	// DESIGN.md: a deleted tenant's tokens stop working at the gateway within one minute.
	maxTenantStaleness = 60 * time.Second
	maxRequestIDLength = 128
	// The shared secret the tenants service requires on /internal/ (X-Internal-Token), as the
	// services read it: the value, or a file holding it (a mounted secret).
	internalTokenVariable     = "DENTIAPRO_INTERNAL_TOKEN"
	internalTokenFileVariable = "DENTIAPRO_INTERNAL_TOKEN_FILE"
)

// Config is the middleware's dynamic configuration; times are in seconds.
type Config struct {
	Mode                string  `json:"mode,omitempty"`
	AuthURL             string  `json:"authUrl,omitempty"`
	TenantsURL          string  `json:"tenantsUrl,omitempty"`
	Issuer              string  `json:"issuer,omitempty"`
	JWKSRefetchInterval float64 `json:"jwksRefetchInterval,omitempty"`
	TenantCacheSeconds  float64 `json:"tenantCacheSeconds,omitempty"`
	TenantsTimeout      float64 `json:"tenantsTimeout,omitempty"`
	// How old a tenant answer may be and still be used while the registry is unreachable:
	// the contract's minute unless lowered (the tests do; the route table never sets it).
	TenantMaxStaleSeconds float64 `json:"tenantMaxStaleSeconds,omitempty"`
}

// CreateConfig gives the defaults of `make run` (DESIGN.md section 8).
func CreateConfig() *Config {
	return &Config{
		Mode:                modeVerify,
		AuthURL:             "http://127.0.0.1:8001",
		TenantsURL:          "http://127.0.0.1:8003",
		Issuer:              "dentiapro-auth",
		JWKSRefetchInterval: 1,
		TenantCacheSeconds:  30,
		TenantsTimeout:      2,

		TenantMaxStaleSeconds: maxTenantStaleness.Seconds(),
	}
}

// settings are a verify middleware's validated configuration; equal settings share a checker.
type settings struct {
	authURL         string
	tenantsURL      string
	issuer          string
	refetchInterval time.Duration
	tenantTTL       time.Duration
	timeout         time.Duration
	maxStale        time.Duration
}

func (c *Config) settings() (settings, error) {
	if c.AuthURL == "" || c.TenantsURL == "" || c.Issuer == "" {
		return settings{}, fmt.Errorf("authUrl, tenantsUrl and issuer are required")
	}
	if c.JWKSRefetchInterval <= 0 || c.TenantsTimeout <= 0 {
		return settings{}, fmt.Errorf("jwksRefetchInterval and tenantsTimeout must be positive")
	}
	// As the edge's settings did: a longer cache would break the one-minute bound.
	if c.TenantCacheSeconds < 0 || c.TenantCacheSeconds > maxTenantStaleness.Seconds() {
		return settings{}, fmt.Errorf("tenantCacheSeconds must be between 0 and 60")
	}
	if c.TenantMaxStaleSeconds <= 0 || c.TenantMaxStaleSeconds > maxTenantStaleness.Seconds() {
		return settings{}, fmt.Errorf("tenantMaxStaleSeconds must be above 0 and at most 60")
	}
	return settings{
		authURL:         strings.TrimRight(c.AuthURL, "/"),
		tenantsURL:      strings.TrimRight(c.TenantsURL, "/"),
		issuer:          c.Issuer,
		refetchInterval: seconds(c.JWKSRefetchInterval),
		tenantTTL:       seconds(c.TenantCacheSeconds),
		timeout:         seconds(c.TenantsTimeout),
		maxStale:        seconds(c.TenantMaxStaleSeconds),
	}, nil
}

func (s settings) key() string {
	return fmt.Sprintf("%s|%s|%s|%d|%d|%d|%d", s.authURL, s.tenantsURL, s.issuer,
		s.refetchInterval, s.tenantTTL, s.timeout, s.maxStale)
}

func seconds(value float64) time.Duration {
	return time.Duration(value * float64(time.Second))
}

// New is called by Traefik for every router that uses the middleware, on every reload.
func New(_ context.Context, next http.Handler, config *Config, name string) (http.Handler, error) {
	switch config.Mode {
	case modeVerify, "":
		s, err := config.settings()
		if err != nil {
			return nil, fmt.Errorf("tokencheck %s: %w", name, err)
		}
		return &verifyHandler{next: next, checker: checkerFor(name, s)}, nil
	case modeHealth:
		return &healthHandler{next: next}, nil
	case modeMetrics:
		return &metricsHandler{}, nil
	}
	return nil, fmt.Errorf("tokencheck %s: unknown mode %q", name, config.Mode)
}

var (
	registryMu sync.Mutex
	// The checkers in use, by settings; and which settings each middleware name last had.
	checkers = map[string]*checker{}
	owners   = map[string]string{}
)

// checkerFor returns the process's checker for these settings, starting it on first use. A
// middleware whose settings changed (a reload with another URL) gets a new checker; the old
// one stops its background work once no middleware names it (handlers still holding it keep
// answering from its caches and fetch on demand until Traefik drops them).
func checkerFor(name string, s settings) *checker {
	registryMu.Lock()
	defer registryMu.Unlock()
	key := s.key()
	current := checkers[key]
	if current == nil {
		current = newChecker(s)
		checkers[key] = current
		current.start()
	}
	previous, known := owners[name]
	owners[name] = key
	if known && previous != key && !ownedLocked(previous) {
		if old := checkers[previous]; old != nil {
			old.stop()
			delete(checkers, previous)
		}
	}
	return current
}

func ownedLocked(key string) bool {
	for _, owned := range owners {
		if owned == key {
			return true
		}
	}
	return false
}

// liveCheckers: the checkers of the current configuration (health and metrics read them).
func liveCheckers() []*checker {
	registryMu.Lock()
	defer registryMu.Unlock()
	live := make([]*checker, 0, len(checkers))
	for _, c := range checkers {
		live = append(live, c)
	}
	return live
}

type verifyHandler struct {
	next    http.Handler
	checker *checker
}

func (h *verifyHandler) ServeHTTP(rw http.ResponseWriter, req *http.Request) {
	header := req.Header
	requestID := header.Get("X-Request-Id")
	if !validRequestID(requestID) {
		requestID = newRequestID()
	}
	header.Set("X-Request-Id", requestID)
	// Only this middleware says who the caller is: a client's copies never reach a service.
	header.Del("X-User-Id")
	header.Del("X-Tenant")
	c := h.checker
	token := bearerToken(header.Get("Authorization"))
	now := time.Now()
	// The common case inline (a token verified before, its tenant's answer fresh): Yaegi
	// interprets every function call at a cost of microseconds, more than the lookups.
	c.tokensMu.RLock()
	caller := c.tokens[token]
	c.tokensMu.RUnlock()
	if caller != nil && caller.expires > now.Unix() {
		c.tenantsMu.RLock()
		known, found := c.answers[caller.tenant]
		c.tenantsMu.RUnlock()
		if found && known.active && now.Sub(known.fetchedAt) < c.settings.tenantTTL {
			atomic.AddUint64(&checkCounts[reasonValid], 1)
			header.Set("X-User-Id", caller.userID)
			header.Set("X-Tenant", caller.tenant)
			h.next.ServeHTTP(rw, req)
			return
		}
	}
	caller, failed := c.authorize(token, now)
	if failed != nil {
		count(failed.reason)
		failed.write(rw, requestID)
		return
	}
	count(reasonValid)
	header.Set("X-User-Id", caller.userID)
	header.Set("X-Tenant", caller.tenant)
	h.next.ServeHTTP(rw, req)
}

// authorize: the caller of a valid access token of an active tenant, or the refusal.
func (c *checker) authorize(token string, now time.Time) (*principal, *failure) {
	if token == "" {
		return nil, errMissing
	}
	caller, failed := c.verify(token, now)
	if failed != nil {
		return nil, failed
	}
	active, err := c.tenantActive(caller.tenant)
	if err != nil {
		return nil, errTenantsUnavailable
	}
	if !active {
		return nil, errInactiveTenant
	}
	return caller, nil
}

// bearerToken is the token of "Bearer <token>" (scheme case-insensitive), else "".
func bearerToken(authorization string) string {
	scheme, token, _ := strings.Cut(authorization, " ")
	if !strings.EqualFold(scheme, "bearer") {
		return ""
	}
	return strings.TrimSpace(token)
}

// visibleASCII: the characters 33-126, which a client's X-Request-ID may hold.
const visibleASCII = "!\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`" +
	"abcdefghijklmnopqrstuvwxyz{|}~"

// validRequestID: a client's X-Request-ID is kept if it is 1-128 visible ASCII characters
// (checked by one call into compiled code, not a loop Yaegi would interpret byte by byte).
func validRequestID(value string) bool {
	return value != "" && len(value) <= maxRequestIDLength &&
		strings.Trim(value, visibleASCII) == ""
}

// newRequestID: 128 random bits as 32 hex digits, as the services create theirs.
func newRequestID() string {
	var raw [16]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return strconv.FormatInt(time.Now().UnixNano(), 16)
	}
	return hex.EncodeToString(raw[:])
}

// failure is a response this plugin answers itself (common/errors.py's shapes).
type failure struct {
	status     int
	reason     int
	body       []byte
	challenge  bool
	retryAfter string
}

func refusal(status, reason int, body string, challenge bool, retryAfter string) *failure {
	return &failure{status, reason, []byte(body), challenge, retryAfter}
}

const (
	tokenNotValid      = `{"detail":"Given token not valid for any token type","code":"token_not_valid"}`
	keysNotLoaded      = "Signing keys not loaded from auth yet, try again shortly."
	tenantsUnavailable = "Tenant registry unavailable, try again shortly."
)

var (
	errMissing = refusal(401, reasonMissing,
		`{"detail":"Authentication credentials were not provided."}`, true, "")
	errInvalid   = refusal(401, reasonInvalid, tokenNotValid, true, "")
	errExpired   = refusal(401, reasonExpired, `{"detail":"Token is expired","code":"token_not_valid"}`, true, "")
	errWrongType = refusal(401, reasonWrongType,
		`{"detail":"Token has wrong type","code":"token_not_valid"}`, true, "")
	errInactiveTenant = refusal(401, reasonInactiveTenant,
		`{"detail":"Token's tenant is no longer active.","code":"token_not_valid"}`, true, "")
	// 503, not 401: the token may well be valid, and a client told "invalid" would drop it.
	errKeysUnavailable = refusal(503, reasonKeysUnavailable,
		`{"detail":"`+keysNotLoaded+`"}`, false, "1")
	errTenantsUnavailable = refusal(503, reasonTenantsUnavailable,
		`{"detail":"`+tenantsUnavailable+`"}`, false, "")
)

func (f *failure) write(rw http.ResponseWriter, requestID string) {
	header := rw.Header()
	header.Set("Content-Type", "application/json")
	header.Set("Content-Length", strconv.Itoa(len(f.body)))
	header.Set("Cache-Control", "no-store")
	header.Set("X-Request-Id", requestID)
	if f.challenge {
		header.Set("Www-Authenticate", `Bearer realm="api"`)
	}
	if f.retryAfter != "" {
		header.Set("Retry-After", f.retryAfter)
	}
	rw.WriteHeader(f.status)
	_, _ = rw.Write(f.body)
}

// healthHandler adds this gateway's key check to the edge's aggregated /health/.
type healthHandler struct {
	next http.Handler
}

func (h *healthHandler) ServeHTTP(rw http.ResponseWriter, req *http.Request) {
	recorded := &recorder{header: http.Header{}, status: http.StatusOK}
	h.next.ServeHTTP(recorded, req)
	var body map[string]interface{}
	if req.Method == http.MethodHead || json.Unmarshal(recorded.body, &body) != nil {
		recorded.replay(rw) // no JSON to add to (a HEAD, or Traefik's own error): as it is
		return
	}
	checks, _ := body["checks"].(map[string]interface{})
	if checks == nil {
		checks = map[string]interface{}{}
		body["checks"] = checks
	}
	check := keysCheck()
	checks["jwks"] = check
	if check["status"] != "pass" {
		body["status"] = "fail"
		recorded.status = http.StatusServiceUnavailable
	}
	encoded, err := json.Marshal(body)
	if err != nil {
		recorded.replay(rw)
		return
	}
	recorded.header.Set("Content-Length", strconv.Itoa(len(encoded)))
	recorded.header.Set("Cache-Control", "no-store")
	recorded.body = encoded
	recorded.replay(rw)
}

// keysCheck passes when every checker of the configuration holds a signing key.
func keysCheck() map[string]interface{} {
	live := liveCheckers()
	if len(live) == 0 {
		return map[string]interface{}{"status": "fail", "output": "no token check configured"}
	}
	for _, c := range live {
		if c.keyCount() == 0 {
			return map[string]interface{}{"status": "fail", "output": keysNotLoaded}
		}
	}
	return map[string]interface{}{"status": "pass"}
}

// recorder holds the edge's /health/ answer until the key check is added to it.
type recorder struct {
	header http.Header
	status int
	body   []byte
}

func (r *recorder) Header() http.Header { return r.header }

func (r *recorder) WriteHeader(status int) { r.status = status }

func (r *recorder) Write(data []byte) (int, error) {
	r.body = append(r.body, data...)
	return len(data), nil
}

func (r *recorder) replay(rw http.ResponseWriter) {
	header := rw.Header()
	for name, values := range r.header {
		header[name] = values
	}
	rw.WriteHeader(r.status)
	_, _ = rw.Write(r.body)
}

// internalToken: DENTIAPRO_INTERNAL_TOKEN, else the content of DENTIAPRO_INTERNAL_TOKEN_FILE,
// read from Traefik's environment when the checker starts; "" sends none.
func internalToken() string {
	if token := strings.TrimSpace(os.Getenv(internalTokenVariable)); token != "" {
		return token
	}
	path := os.Getenv(internalTokenFileVariable)
	if path == "" {
		return ""
	}
	content, err := os.ReadFile(path)
	if err != nil {
		logf("could not read %s (%v): no X-Internal-Token is sent", internalTokenFileVariable, err)
		return ""
	}
	return strings.TrimSpace(string(content))
}

// logf writes a warning to Traefik's log (a plugin's stderr goes there as it is), as one JSON
// line like Traefik's own (traefik.yml: log.format json).
func logf(format string, args ...interface{}) {
	line, _ := json.Marshal(map[string]string{
		"level":   "warn",
		"plugin":  "tokencheck",
		"time":    time.Now().UTC().Format(time.RFC3339),
		"message": fmt.Sprintf(format, args...),
	})
	fmt.Fprintln(os.Stderr, string(line))
}
