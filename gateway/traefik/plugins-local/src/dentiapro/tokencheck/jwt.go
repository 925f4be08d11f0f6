package tokencheck

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/big"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The token rules of libs/common/common/tokens.py (PyJWT underneath), in PyJWT's order.
const (
	maxCachedTokens = 50000
	// An exp beyond this (year 2255) is kept as this: int64 conversion of a huge float is
	// undefined, and no cache entry lives that long anyway.
	maxExpiry = 1 << 33
)

var requiredClaims = []string{"exp", "iat", "jti", "sub", "tenant", "token_type", "iss"}

// principal is what a verified access token says: who, in which tenant, until when.
type principal struct {
	userID  string
	tenant  string
	expires int64
}

// signingKey is one public key of auth's JWKS; its algorithm comes from the key, never from
// a token's header.
type signingKey struct {
	alg     string
	ed25519 ed25519.PublicKey
	rsa     *rsa.PublicKey
}

func (k *signingKey) verify(signed, signature []byte) bool {
	if k.alg == "EdDSA" {
		return ed25519.Verify(k.ed25519, signed, signature)
	}
	digest := sha256.Sum256(signed)
	return rsa.VerifyPKCS1v15(k.rsa, crypto.SHA256, digest[:], signature) == nil
}

// checker holds one configuration's keys, verified tokens and tenant answers.
type checker struct {
	settings settings
	client   *http.Client
	secret   string

	keysMu sync.RWMutex
	keys   map[string]*signingKey
	// Serialises JWKS fetches; lastFetch throttles them (refetchInterval).
	fetchMu      sync.Mutex
	lastFetch    time.Time
	fetchFailing bool

	tokensMu sync.RWMutex
	tokens   map[string]*principal

	tenantsMu sync.RWMutex
	answers   map[string]answer
	pending   map[string]*lookup

	done     chan struct{}
	stopOnce sync.Once
}

func newChecker(s settings) *checker {
	return &checker{
		settings: s,
		client: &http.Client{
			Timeout:   s.timeout,
			Transport: &http.Transport{MaxIdleConnsPerHost: 8, IdleConnTimeout: 30 * time.Second},
		},
		secret:  internalToken(),
		keys:    map[string]*signingKey{},
		tokens:  map[string]*principal{},
		answers: map[string]answer{},
		pending: map[string]*lookup{},
		done:    make(chan struct{}),
	}
}

// start: keys fetched at once and retried until loaded (a gateway that has them keeps
// verifying while auth is down later); tenant statuses refreshed in the background.
func (c *checker) start() {
	go c.prefetchKeys()
	if c.settings.tenantTTL > 0 {
		go c.refreshTenants()
	}
}

func (c *checker) stop() {
	c.stopOnce.Do(func() { close(c.done) })
}

func (c *checker) stopped(wait time.Duration) bool {
	select {
	case <-c.done:
		return true
	case <-time.After(wait):
		return false
	}
}

func (c *checker) prefetchKeys() {
	retry := c.settings.refetchInterval
	if retry > time.Second {
		retry = time.Second
	}
	for !c.refreshKeys() {
		if c.stopped(retry) {
			return
		}
	}
}

func (c *checker) keyCount() int {
	c.keysMu.RLock()
	defer c.keysMu.RUnlock()
	return len(c.keys)
}

func (c *checker) key(kid string) *signingKey {
	c.keysMu.RLock()
	defer c.keysMu.RUnlock()
	return c.keys[kid]
}

// keyFor: the key named kid, fetching the JWKS once more for an unknown one (a rotation).
func (c *checker) keyFor(kid string) (*signingKey, *failure) {
	if key := c.key(kid); key != nil {
		return key, nil
	}
	if !c.refreshKeys() {
		return nil, errKeysUnavailable
	}
	return c.key(kid), nil
}

// refreshKeys fetches the JWKS, at most once per refetchInterval (a flood of forged kids
// cannot hammer auth; with no key at all, once a second). On failure the old keys stay.
// Reports whether any key is held afterwards.
func (c *checker) refreshKeys() bool {
	c.fetchMu.Lock()
	defer c.fetchMu.Unlock()
	interval := c.settings.refetchInterval
	if c.keyCount() == 0 && interval > time.Second {
		interval = time.Second
	}
	if time.Since(c.lastFetch) < interval {
		return c.keyCount() > 0
	}
	c.lastFetch = time.Now()
	keys, err := c.fetchKeys()
	if err != nil {
		if !c.fetchFailing {
			logf("could not fetch the JWKS (%v); keeping the %d keys held", err, c.keyCount())
		}
		c.fetchFailing = true
		return c.keyCount() > 0
	}
	if c.fetchFailing {
		logf("JWKS fetched (%d keys) after failed attempts", len(keys))
	}
	c.fetchFailing = false
	if len(keys) > 0 {
		c.keysMu.Lock()
		c.keys = keys
		c.keysMu.Unlock()
	}
	return c.keyCount() > 0
}

func (c *checker) fetchKeys() (map[string]*signingKey, error) {
	response, err := c.client.Get(c.settings.authURL + "/api/auth/jwks/")
	if err != nil {
		return nil, errors.New("auth unreachable")
	}
	defer response.Body.Close()
	if response.StatusCode < 200 || response.StatusCode > 299 {
		return nil, fmt.Errorf("auth answered HTTP %d", response.StatusCode)
	}
	var document struct {
		Keys []map[string]interface{} `json:"keys"`
	}
	if err := json.NewDecoder(response.Body).Decode(&document); err != nil {
		return nil, errors.New("no JWKS in auth's answer")
	}
	keys := map[string]*signingKey{}
	for _, entry := range document.Keys {
		if kid, key := parseJWK(entry); key != nil {
			keys[kid] = key
		}
	}
	return keys, nil
}

// parseJWK: an Ed25519 (EdDSA) or RSA (RS256) public key with a kid; anything else is
// skipped, as PyJWT's PyJWK and the allowed algorithms left it out.
func parseJWK(entry map[string]interface{}) (string, *signingKey) {
	kid, _ := entry["kid"].(string)
	kty, _ := entry["kty"].(string)
	alg, given := entry["alg"].(string)
	if !given { // PyJWK infers it from the key type
		switch kty {
		case "OKP":
			alg = "EdDSA"
		case "RSA":
			alg = "RS256"
		}
	}
	if kid == "" {
		return "", nil
	}
	switch {
	case alg == "EdDSA" && kty == "OKP" && entry["crv"] == "Ed25519":
		x, err := decodeSegment(stringField(entry, "x"))
		if err != nil || len(x) != ed25519.PublicKeySize {
			return "", nil
		}
		return kid, &signingKey{alg: alg, ed25519: ed25519.PublicKey(x)}
	case alg == "RS256" && kty == "RSA":
		n, errN := decodeSegment(stringField(entry, "n"))
		e, errE := decodeSegment(stringField(entry, "e"))
		if errN != nil || errE != nil || len(n) == 0 || len(e) == 0 || len(e) > 4 {
			return "", nil
		}
		exponent := int(new(big.Int).SetBytes(e).Int64())
		return kid, &signingKey{alg: alg, rsa: &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: exponent}}
	}
	return "", nil
}

func stringField(entry map[string]interface{}, name string) string {
	value, _ := entry[name].(string)
	return value
}

// decodeSegment: base64url, padded or not.
func decodeSegment(segment string) ([]byte, error) {
	return base64.RawURLEncoding.DecodeString(strings.TrimRight(segment, "="))
}

// verify: the principal of a valid access token, from the cache while it is unexpired.
func (c *checker) verify(token string, now time.Time) (*principal, *failure) {
	c.tokensMu.RLock()
	cached := c.tokens[token]
	c.tokensMu.RUnlock()
	if cached != nil && cached.expires > now.Unix() {
		return cached, nil
	}
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil, errInvalid
	}
	var header map[string]interface{}
	if raw, err := decodeSegment(parts[0]); err != nil || json.Unmarshal(raw, &header) != nil {
		return nil, errInvalid
	}
	kid, kidIsString := header["kid"].(string)
	alg, _ := header["alg"].(string)
	_, critical := header["crit"] // no extension is understood here
	if !kidIsString || (alg != "EdDSA" && alg != "RS256") || critical {
		return nil, errInvalid
	}
	key, failed := c.keyFor(kid)
	if failed != nil {
		return nil, failed
	}
	if key == nil || key.alg != alg {
		return nil, errInvalid
	}
	signature, err := decodeSegment(parts[2])
	if err != nil || !key.verify([]byte(token[:len(parts[0])+1+len(parts[1])]), signature) {
		return nil, errInvalid
	}
	var claims map[string]interface{}
	if raw, err := decodeSegment(parts[1]); err != nil || json.Unmarshal(raw, &claims) != nil {
		return nil, errInvalid
	}
	caller, failed := c.validate(claims, now)
	if failed != nil {
		return nil, failed
	}
	c.remember(token, caller, now.Unix())
	return caller, nil
}

// validate applies PyJWT's claim checks in its order, then tokens.py's own.
func (c *checker) validate(claims map[string]interface{}, now time.Time) (*principal, *failure) {
	for _, name := range requiredClaims {
		if claims[name] == nil {
			return nil, errInvalid
		}
	}
	clock := float64(now.UnixNano()) / 1e9
	issuedAt, ok := whole(claims["iat"])
	if !ok || issuedAt > clock {
		return nil, errInvalid
	}
	if value, present := claims["nbf"]; present {
		notBefore, ok := whole(value)
		if !ok || notBefore > clock {
			return nil, errInvalid
		}
	}
	expires, ok := whole(claims["exp"])
	if !ok {
		return nil, errInvalid
	}
	if expires <= clock {
		return nil, errExpired
	}
	issuer, _ := claims["iss"].(string)
	subject, subjectIsString := claims["sub"].(string)
	_, jtiIsString := claims["jti"].(string)
	if issuer != c.settings.issuer || !subjectIsString || !jtiIsString {
		return nil, errInvalid
	}
	if tokenType, _ := claims["token_type"].(string); tokenType != "access" {
		return nil, errWrongType
	}
	userID, err := strconv.ParseInt(strings.TrimSpace(subject), 10, 64)
	tenant, tenantIsString := claims["tenant"].(string)
	if err != nil || !tenantIsString {
		return nil, errInvalid
	}
	return &principal{
		userID:  strconv.FormatInt(userID, 10),
		tenant:  tenant,
		expires: int64(math.Min(expires, maxExpiry)),
	}, nil
}

// whole: a numeric claim truncated to whole seconds, as PyJWT's int() does.
func whole(value interface{}) (float64, bool) {
	number, ok := value.(float64)
	if !ok || math.IsNaN(number) || math.IsInf(number, 0) {
		return 0, false
	}
	return math.Trunc(number), true
}

// remember caches a verified token until its exp, in a bounded cache (expired entries are
// dropped when it is full; if that frees nothing, everything is).
func (c *checker) remember(token string, caller *principal, now int64) {
	c.tokensMu.Lock()
	defer c.tokensMu.Unlock()
	if len(c.tokens) >= maxCachedTokens {
		for cachedToken, cached := range c.tokens {
			if cached.expires <= now {
				delete(c.tokens, cachedToken)
			}
		}
		if len(c.tokens) >= maxCachedTokens {
			c.tokens = map[string]*principal{}
		}
	}
	c.tokens[token] = caller
}

func (c *checker) cachedTokens() int {
	c.tokensMu.RLock()
	defer c.tokensMu.RUnlock()
	return len(c.tokens)
}
