package tokencheck

import (
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
)

// Token checks by result and reason (DESIGN.md section 6), served in Prometheus text by the
// metrics mode on the internal entry point: Traefik's own /metrics/ has no room for a
// plugin's series. A fixed set of label pairs, so the series stay bounded.
const (
	reasonValid = iota
	reasonMissing
	reasonExpired
	reasonWrongType
	reasonInvalid
	reasonInactiveTenant
	reasonKeysUnavailable
	reasonTenantsUnavailable
	reasonCount
)

var reasonLabels = [reasonCount][2]string{
	{"ok", "valid"},
	{"denied", "missing"},
	{"denied", "expired"},
	{"denied", "wrong_type"},
	{"denied", "invalid"},
	{"denied", "inactive_tenant"},
	{"error", "keys_unavailable"},
	{"error", "tenants_unavailable"},
}

var checkCounts [reasonCount]uint64

func count(reason int) {
	atomic.AddUint64(&checkCounts[reason], 1)
}

type metricsHandler struct{}

func (metricsHandler) ServeHTTP(rw http.ResponseWriter, _ *http.Request) {
	var text strings.Builder
	text.WriteString("# HELP gateway_token_checks_total Token checks at the gateway by result " +
		"(ok, denied, error) and reason.\n# TYPE gateway_token_checks_total counter\n")
	for reason, labels := range reasonLabels {
		fmt.Fprintf(&text, "gateway_token_checks_total{result=%q,reason=%q} %d\n",
			labels[0], labels[1], atomic.LoadUint64(&checkCounts[reason]))
	}
	keys, tokens := -1, 0
	for _, c := range liveCheckers() {
		if held := c.keyCount(); keys < 0 || held < keys {
			keys = held
		}
		tokens += c.cachedTokens()
	}
	if keys < 0 {
		keys = 0
	}
	fmt.Fprintf(&text, "# HELP gateway_token_check_signing_keys Signing keys the gateway holds "+
		"from auth's JWKS (0: no token can be verified).\n"+
		"# TYPE gateway_token_check_signing_keys gauge\ngateway_token_check_signing_keys %d\n", keys)
	fmt.Fprintf(&text, "# HELP gateway_token_check_cached_tokens Verified tokens cached until "+
		"their exp.\n# TYPE gateway_token_check_cached_tokens gauge\n"+
		"gateway_token_check_cached_tokens %d\n", tokens)
	header := rw.Header()
	header.Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	header.Set("Cache-Control", "no-store")
	rw.WriteHeader(http.StatusOK)
	_, _ = rw.Write([]byte(text.String()))
}
