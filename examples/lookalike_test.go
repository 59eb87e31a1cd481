package examples_test

import (
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/encoding/protojson"
)

// Every example keeps look-alikes of scopegate's identity headers (a name
// with an underscore, which CGI, WSGI, PHP and Rack map to the same
// variable as the real header) away from the upstream. The proxies'
// behaviour is checked end to end in server/e2e; this pins the settings
// of the examples no test runs.
func TestExamplesDropLookAlikeHeaders(t *testing.T) {
	for _, f := range []string{"envoy/envoy-grpc.yaml", "envoy/envoy-http.yaml"} {
		p := parts(t, loadBootstrap(t, f))
		if got := p.hcm.GetCommonHttpProtocolOptions().GetHeadersWithUnderscoresAction(); got == corev3.HttpProtocolOptions_ALLOW {
			t.Errorf("%s: headers_with_underscores_action is %v: a client's X_Scopegate_Subject reaches the upstream", f, got)
		}
	}

	// Istio: an EnvoyFilter merging the same setting into every HCM.
	docs := yamlDocs(t, "istio/envoyfilter-underscores.yaml")
	if len(docs) != 1 || at(t, docs[0], "kind") != "EnvoyFilter" {
		t.Fatal("istio/envoyfilter-underscores.yaml is not one EnvoyFilter")
	}
	patches := at(t, docs[0], "spec", "configPatches").([]any)
	found := false
	for _, p := range patches {
		pm := p.(map[string]any)
		if pm["applyTo"] != "NETWORK_FILTER" || at(t, pm, "patch", "operation") != "MERGE" {
			continue
		}
		if at(t, pm, "match", "listener", "filterChain", "filter", "name") != "envoy.filters.network.http_connection_manager" {
			continue
		}
		tc := at(t, pm, "patch", "value", "typed_config").(map[string]any)
		if tc["@type"] != "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager" {
			t.Errorf("typed_config @type %v", tc["@type"])
		}
		delete(tc, "@type")
		js, _ := json.Marshal(tc)
		var hcm hcmv3.HttpConnectionManager
		if err := protojson.Unmarshal(js, &hcm); err != nil {
			t.Fatalf("the EnvoyFilter's HttpConnectionManager patch: %v", err)
		}
		if hcm.GetCommonHttpProtocolOptions().GetHeadersWithUnderscoresAction() != corev3.HttpProtocolOptions_ALLOW {
			found = true
		}
	}
	if !found {
		t.Error("the Istio EnvoyFilter does not drop or reject headers with underscores")
	}

	// nginx: underscores off and invalid headers ignored, in the server.
	nginx, err := os.ReadFile("nginx/nginx.conf")
	if err != nil {
		t.Fatal(err)
	}
	for _, re := range []string{`(?m)^\s*underscores_in_headers\s+off;`, `(?m)^\s*ignore_invalid_headers\s+on;`} {
		if !regexp.MustCompile(re).Match(nginx) {
			t.Errorf("nginx.conf lacks %s", re)
		}
	}
	if regexp.MustCompile(`(?m)^\s*underscores_in_headers\s+on;`).Match(nginx) {
		t.Error("nginx.conf turns underscores_in_headers on")
	}

	// Caddy: every underscore spelling of every identity header removed.
	caddy, err := os.ReadFile("caddy/Caddyfile")
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{"Subject", "Client", "Scopes"} {
		for _, v := range []string{"X_Scopegate_" + h, "X_Scopegate-" + h, "X-Scopegate_" + h} {
			if !strings.Contains(string(caddy), "request_header -"+v+"\n") {
				t.Errorf("Caddyfile does not remove %s", v)
			}
		}
	}
}
