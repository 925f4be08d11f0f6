package tokencheck

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"
)

// Whether a tenant is still active, asked of the tenants service and cached briefly.
//
// An answer is reused for tenantTTL; every tenantTTL/2 one request fetches every tenant's
// status, so cached answers do not go stale and the cost does not grow with the number of
// tenants; a tenant not seen yet gets a single lookup (concurrent requests share it). When
// the tenants service cannot answer, an answer up to maxStale (a minute) old is still used;
// without one the request gets a 503, never "active".

const (
	resolvePath = "/internal/tenants/resolve/"
	statusPath  = "/internal/tenants/status/"
	// A tiny TTL must not turn the refresh into a busy loop.
	minRefreshInterval = 100 * time.Millisecond
)

var errTenants = errors.New("tenant registry unavailable")

type answer struct {
	active    bool
	fetchedAt time.Time
}

type lookup struct {
	done   chan struct{}
	active bool
	err    error
}

func (c *checker) tenantActive(schema string) (bool, error) {
	c.tenantsMu.RLock()
	previous, known := c.answers[schema]
	c.tenantsMu.RUnlock()
	if known && time.Since(previous.fetchedAt) < c.settings.tenantTTL {
		return previous.active, nil
	}
	c.tenantsMu.Lock()
	pending := c.pending[schema]
	if pending == nil {
		pending = &lookup{done: make(chan struct{})}
		c.pending[schema] = pending
		go c.resolve(schema, pending)
	}
	c.tenantsMu.Unlock()
	<-pending.done
	if pending.err == nil {
		return pending.active, nil
	}
	if known && time.Since(previous.fetchedAt) < c.settings.maxStale {
		return previous.active, nil
	}
	return false, pending.err
}

func (c *checker) resolve(schema string, pending *lookup) {
	fetchedAt := time.Now()
	active, err := c.fetchStatus(schema)
	c.tenantsMu.Lock()
	if err == nil {
		c.answers[schema] = answer{active: active, fetchedAt: fetchedAt}
	}
	delete(c.pending, schema)
	c.tenantsMu.Unlock()
	pending.active, pending.err = active, err
	close(pending.done)
}

// fetchStatus: 200 {"is_active": true} is active; a 404 is a deleted or unknown tenant.
func (c *checker) fetchStatus(schema string) (bool, error) {
	response, err := c.internalGet(resolvePath + "?schema_name=" + url.QueryEscape(schema))
	if err != nil {
		return false, err
	}
	defer response.Body.Close()
	switch response.StatusCode {
	case http.StatusNotFound:
		return false, nil
	case http.StatusOK:
		var body map[string]interface{}
		if json.NewDecoder(response.Body).Decode(&body) != nil {
			return false, errTenants
		}
		return body["is_active"] == true, nil
	}
	return false, fmt.Errorf("tenants answered HTTP %d", response.StatusCode)
}

func (c *checker) internalGet(path string) (*http.Response, error) {
	request, err := http.NewRequest(http.MethodGet, c.settings.tenantsURL+path, nil)
	if err != nil {
		return nil, err
	}
	if c.secret != "" {
		request.Header.Set("X-Internal-Token", c.secret)
	}
	response, err := c.client.Do(request)
	if err != nil {
		return nil, errTenants
	}
	return response, nil
}

// refreshTenants stores every tenant's status now, then every tenantTTL/2 (an answer is
// renewed before it goes stale even if one refresh is slow), until the checker stops.
func (c *checker) refreshTenants() {
	interval := c.settings.tenantTTL / 2
	if interval < minRefreshInterval {
		interval = minRefreshInterval
	}
	failing := false
	for {
		if err := c.refreshAll(); err != nil {
			if !failing {
				logf("tenant status refresh failed (%v); keeping the cached answers", err)
			}
			failing = true
		} else {
			failing = false
		}
		if c.stopped(interval) {
			return
		}
	}
}

func (c *checker) refreshAll() error {
	// Timed from the request's start: a deletion just before it must not look fresher.
	fetchedAt := time.Now()
	response, err := c.internalGet(statusPath)
	if err != nil {
		return err
	}
	defer response.Body.Close()
	if response.StatusCode != http.StatusOK {
		return fmt.Errorf("tenants answered HTTP %d", response.StatusCode)
	}
	var body struct {
		Tenants map[string]interface{} `json:"tenants"`
	}
	if json.NewDecoder(response.Body).Decode(&body) != nil || body.Tenants == nil {
		return errors.New("no tenants object in the status answer")
	}
	c.tenantsMu.Lock()
	defer c.tenantsMu.Unlock()
	for schema, active := range body.Tenants {
		current, known := c.answers[schema]
		// A single lookup that finished meanwhile may have seen a later change: keep it.
		if !known || current.fetchedAt.Before(fetchedAt) {
			c.answers[schema] = answer{active: active == true, fetchedAt: fetchedAt}
		}
	}
	return nil
}
