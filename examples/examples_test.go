// Package examples_test checks the deployment examples against the real
// schemas and against scopegate itself, so that none of them can rot: the
// Envoy bootstraps are parsed into Envoy's own types and validated, the
// Kubernetes and Istio manifests are checked for the fields scopegate
// relies on, and every metric the alert rules name must be one scopegate
// exports.
package examples_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/known/anypb"

	// The typed configs the bootstraps name, so their Any values resolve.
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"

	"github.com/scopegate/scopegate/cmd/scopegate/settings"
	"github.com/scopegate/scopegate/decision"
	"github.com/scopegate/scopegate/decision/decisiontest"
	"github.com/scopegate/scopegate/server"
)

// yamlDocs reads every YAML document of the file at path as generic data.
func yamlDocs(t *testing.T, path string) []map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	var docs []map[string]any
	for {
		var doc map[string]any
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if doc != nil {
			docs = append(docs, doc)
		}
	}
	if len(docs) == 0 {
		t.Fatalf("%s holds no document", path)
	}
	return docs
}

// at walks data along keys (map keys, or list indexes as ints) and returns
// what it finds, failing the test if the path does not exist.
func at(t *testing.T, data any, keys ...any) any {
	t.Helper()
	cur := data
	for i, k := range keys {
		switch c := cur.(type) {
		case map[string]any:
			name, ok := k.(string)
			v, found := c[name]
			if !ok || !found {
				t.Fatalf("no %v at %v", k, keys[:i])
			}
			cur = v
		case []any:
			n, ok := k.(int)
			if !ok || n >= len(c) {
				t.Fatalf("no [%v] at %v", k, keys[:i])
			}
			cur = c[n]
		default:
			t.Fatalf("%v is not a map or list (%T)", keys[:i], cur)
		}
	}
	return cur
}

// loadBootstrap parses an Envoy bootstrap written in YAML the way Envoy
// does: YAML to JSON, then protojson, which rejects unknown fields.
func loadBootstrap(t *testing.T, path string) *bootstrapv3.Bootstrap {
	t.Helper()
	docs := yamlDocs(t, path)
	if len(docs) != 1 {
		t.Fatalf("%s: %d documents, want 1", path, len(docs))
	}
	js, err := json.Marshal(docs[0])
	if err != nil {
		t.Fatal(err)
	}
	var bs bootstrapv3.Bootstrap
	if err := protojson.Unmarshal(js, &bs); err != nil {
		t.Fatalf("%s is not a valid Envoy bootstrap: %v", path, err)
	}
	if err := bs.ValidateAll(); err != nil {
		t.Fatalf("%s fails Envoy's validation: %v", path, err)
	}
	if err := validateTyped(bs.ProtoReflect(), path); err != nil {
		t.Fatal(err)
	}
	return &bs
}

// validateTyped unpacks every typed_config (Any) in m, validates it with
// its own rules and descends into it: the bootstrap's own validation stops
// at an Any. A deprecated field anywhere is an error too, so the examples
// move with Envoy's API.
func validateTyped(m protoreflect.Message, where string) error {
	if a, ok := m.Interface().(*anypb.Any); ok {
		inner, err := anypb.UnmarshalNew(a, proto.UnmarshalOptions{})
		if err != nil {
			return fmt.Errorf("%s: %s: %v", where, a.GetTypeUrl(), err)
		}
		if v, ok := inner.(interface{ ValidateAll() error }); ok {
			if err := v.ValidateAll(); err != nil {
				return fmt.Errorf("%s: %s: %v", where, a.GetTypeUrl(), err)
			}
		}
		return validateTyped(inner.ProtoReflect(), where+" > "+a.GetTypeUrl())
	}
	var err error
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if opts, ok := fd.Options().(*descriptorpb.FieldOptions); ok && opts.GetDeprecated() {
			err = fmt.Errorf("%s: %s is deprecated in Envoy's API: use its replacement", where, fd.FullName())
			return false
		}
		if fd.Kind() != protoreflect.MessageKind && fd.Kind() != protoreflect.GroupKind {
			return true
		}
		switch {
		case fd.IsList():
			for i := 0; i < v.List().Len() && err == nil; i++ {
				err = validateTyped(v.List().Get(i).Message(), where)
			}
		case fd.IsMap():
			if fd.MapValue().Kind() == protoreflect.MessageKind {
				v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
					err = validateTyped(mv.Message(), where)
					return err == nil
				})
			}
		default:
			err = validateTyped(v.Message(), where)
		}
		return err == nil
	})
	return err
}

// envoyParts are the pieces of a bootstrap the assertions look at.
type envoyParts struct {
	extAuthz *extauthzv3.ExtAuthz
	hcm      *hcmv3.HttpConnectionManager
	clusters map[string]uint32 // name → port of its first endpoint
}

func parts(t *testing.T, bs *bootstrapv3.Bootstrap) envoyParts {
	t.Helper()
	p := envoyParts{clusters: map[string]uint32{}}
	for _, c := range bs.GetStaticResources().GetClusters() {
		ep := c.GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint()
		p.clusters[c.GetName()] = ep.GetAddress().GetSocketAddress().GetPortValue()
	}
	for _, l := range bs.GetStaticResources().GetListeners() {
		for _, fc := range l.GetFilterChains() {
			for _, f := range fc.GetFilters() {
				hcm := &hcmv3.HttpConnectionManager{}
				if err := f.GetTypedConfig().UnmarshalTo(hcm); err != nil {
					continue
				}
				p.hcm = hcm
				for _, hf := range hcm.GetHttpFilters() {
					ea := &extauthzv3.ExtAuthz{}
					if hf.GetTypedConfig().UnmarshalTo(ea) == nil {
						p.extAuthz = ea
					}
				}
			}
		}
	}
	if p.hcm == nil || p.extAuthz == nil {
		t.Fatal("no http_connection_manager with an ext_authz filter")
	}
	if names := filterNames(p.hcm); names[len(names)-1] != "envoy.filters.http.router" {
		t.Errorf("http filters %v: the router must come last", names)
	}
	return p
}

func filterNames(hcm *hcmv3.HttpConnectionManager) []string {
	var out []string
	for _, f := range hcm.GetHttpFilters() {
		out = append(out, f.GetName())
	}
	return out
}

func TestEnvoyBootstrapGRPC(t *testing.T) {
	p := parts(t, loadBootstrap(t, "envoy/envoy-grpc.yaml"))
	ea := p.extAuthz
	if ea.GetTransportApiVersion() != corev3.ApiVersion_V3 {
		t.Errorf("transport_api_version %v, want V3", ea.GetTransportApiVersion())
	}
	if ea.GetFailureModeAllow() {
		t.Error("failure_mode_allow is true: the example must fail closed")
	}
	if !ea.GetIncludePeerCertificate() {
		t.Error("include_peer_certificate is off: certificate-bound tokens cannot be checked")
	}
	if ea.GetWithRequestBody() != nil {
		t.Error("with_request_body is set: decisions never need the body")
	}
	if got := ea.GetStatusOnError().GetCode(); got != 503 {
		t.Errorf("status_on_error %v, want 503", got)
	}
	cluster := ea.GetGrpcService().GetEnvoyGrpc().GetClusterName()
	if port, ok := p.clusters[cluster]; !ok || port != 9191 {
		t.Errorf("ext_authz cluster %q: port %d (exists %v), want scopegate's gRPC port 9191", cluster, port, ok)
	}
	// Per-route context: environment for when.environment rules.
	found := false
	for _, vh := range p.hcm.GetRouteConfig().GetVirtualHosts() {
		for _, r := range vh.GetRoutes() {
			cfg, ok := r.GetTypedPerFilterConfig()["envoy.filters.http.ext_authz"]
			if !ok {
				continue
			}
			per := &extauthzv3.ExtAuthzPerRoute{}
			if err := cfg.UnmarshalTo(per); err != nil {
				t.Fatal(err)
			}
			if per.GetCheckSettings().GetContextExtensions()["environment"] != "" {
				found = true
			}
		}
	}
	if !found {
		t.Error("no route sets the environment context extension")
	}
}

func TestEnvoyBootstrapHTTP(t *testing.T) {
	p := parts(t, loadBootstrap(t, "envoy/envoy-http.yaml"))
	ea := p.extAuthz
	if ea.GetFailureModeAllow() || ea.GetTransportApiVersion() != corev3.ApiVersion_V3 {
		t.Error("the HTTP variant must be V3 and fail closed")
	}
	hs := ea.GetHttpService()
	if hs == nil {
		t.Fatal("no http_service")
	}
	if port, ok := p.clusters[hs.GetServerUri().GetCluster()]; !ok || port != 9192 {
		t.Errorf("http_service cluster %q: port %d, want scopegate's HTTP port 9192", hs.GetServerUri().GetCluster(), port)
	}
	if !strings.HasPrefix(hs.GetPathPrefix(), "/") {
		t.Errorf("path_prefix %q", hs.GetPathPrefix())
	}
	upstream := hs.GetAuthorizationResponse().GetAllowedUpstreamHeaders().GetPatterns()
	if !slices.ContainsFunc(upstream, func(m *matcherv3.StringMatcher) bool { return m.GetPrefix() == "x-scopegate-" }) {
		t.Error("allowed_upstream_headers does not pass x-scopegate-* to the upstream")
	}
	req := ea.GetAllowedHeaders().GetPatterns()
	if !slices.ContainsFunc(req, func(m *matcherv3.StringMatcher) bool { return m.GetExact() == "authorization" }) {
		t.Error("allowed_headers does not send the authorization header")
	}
}

// TestEnvoyBootstrapValidationBites: the checks above reject a broken
// bootstrap, so a passing run means something.
func TestEnvoyBootstrapValidationBites(t *testing.T) {
	good, err := os.ReadFile("envoy/envoy-grpc.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for name, edit := range map[string][2]string{
		"unknown field":    {"failure_mode_allow: false", "failure_mode_allowed: false"},
		"bad enum":         {"transport_api_version: V3", "transport_api_version: V4"},
		"invalid port":     {"port_value: 9191", "port_value: 99999"},
		"unknown type url": {"ext_authz.v3.ExtAuthz\n", "ext_authz.v3.ExtAuthzz\n"},
		"deprecated field": {"    - name: scopegate\n      type: STATIC\n", "    - name: scopegate\n      type: STATIC\n      http2_protocol_options: {}\n"},
	} {
		t.Run(name, func(t *testing.T) {
			bad := strings.Replace(string(good), edit[0], edit[1], 1)
			if bad == string(good) {
				t.Fatalf("%q not found in the example", edit[0])
			}
			var doc map[string]any
			if err := yaml.Unmarshal([]byte(bad), &doc); err != nil {
				t.Fatal(err)
			}
			js, _ := json.Marshal(doc)
			var bs bootstrapv3.Bootstrap
			err := protojson.Unmarshal(js, &bs)
			if err == nil {
				err = bs.ValidateAll()
			}
			if err == nil {
				err = validateTyped(bs.ProtoReflect(), name)
			}
			if err == nil {
				t.Error("the broken bootstrap passed")
			}
			t.Log(err)
		})
	}
}

func TestIstio(t *testing.T) {
	mesh := yamlDocs(t, "istio/meshconfig.yaml")[0]
	var meshCfg map[string]any
	if err := yaml.Unmarshal([]byte(at(t, mesh, "data", "mesh").(string)), &meshCfg); err != nil {
		t.Fatalf("data.mesh: %v", err)
	}
	providers := map[string]map[string]any{}
	for _, p := range at(t, meshCfg, "extensionProviders").([]any) {
		pm := p.(map[string]any)
		g, ok := pm["envoyExtAuthzGrpc"].(map[string]any)
		if !ok {
			continue
		}
		// The fields of Istio's EnvoyExternalAuthorizationGrpcProvider:
		// anything else is a typo Istio would reject.
		for k := range g {
			if !slices.Contains([]string{"service", "port", "timeout", "failOpen", "statusOnError", "includeRequestBodyInCheck"}, k) {
				t.Errorf("envoyExtAuthzGrpc has unknown field %q", k)
			}
		}
		if g["failOpen"] != false {
			t.Errorf("provider %v: failOpen must be false", pm["name"])
		}
		if g["port"] != 9191 {
			t.Errorf("provider %v: port %v, want scopegate's gRPC port 9191", pm["name"], g["port"])
		}
		providers[pm["name"].(string)] = g
	}
	if len(providers) == 0 {
		t.Fatal("no envoyExtAuthzGrpc provider")
	}
	pol := yamlDocs(t, "istio/authorizationpolicy.yaml")[0]
	if at(t, pol, "kind") != "AuthorizationPolicy" || at(t, pol, "spec", "action") != "CUSTOM" {
		t.Error("the AuthorizationPolicy must have action CUSTOM")
	}
	if name := at(t, pol, "spec", "provider", "name").(string); providers[name] == nil {
		t.Errorf("the AuthorizationPolicy names provider %q, which meshconfig.yaml does not define", name)
	}
}

// kubeObjects reads every manifest of examples/kubernetes by kind.
func kubeObjects(t *testing.T) map[string]map[string]any {
	t.Helper()
	files, err := filepath.Glob("kubernetes/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string]any{}
	for _, f := range files {
		for _, doc := range yamlDocs(t, f) {
			kind, _ := doc["kind"].(string)
			if kind == "" || doc["apiVersion"] == nil || at(t, doc, "metadata", "name") == nil {
				t.Errorf("%s: a document without apiVersion, kind or metadata.name", f)
				continue
			}
			out[kind] = doc
		}
	}
	return out
}

func TestKubernetes(t *testing.T) {
	objs := kubeObjects(t)
	for _, kind := range []string{"ConfigMap", "Deployment", "Service", "PodDisruptionBudget"} {
		if objs[kind] == nil {
			t.Fatalf("examples/kubernetes has no %s", kind)
		}
	}
	dep := objs["Deployment"]
	pod := at(t, dep, "spec", "template", "spec")
	c := at(t, pod, "containers", 0).(map[string]any)

	ports := map[string]int{}
	for _, p := range c["ports"].([]any) {
		pm := p.(map[string]any)
		ports[pm["name"].(string)] = pm["containerPort"].(int)
	}
	for name, want := range map[string]int{"grpc": 9191, "http": 9192, "metrics": 9194} {
		if ports[name] != want {
			t.Errorf("container port %s = %d, want %d", name, ports[name], want)
		}
	}
	for probe, path := range map[string]string{"readinessProbe": "/readyz", "livenessProbe": "/healthz"} {
		if got := at(t, c, probe, "httpGet", "path"); got != path {
			t.Errorf("%s path %v, want %s", probe, got, path)
		}
		if got := at(t, c, probe, "httpGet", "port"); got != "metrics" {
			t.Errorf("%s port %v, want the metrics port", probe, got)
		}
	}
	if at(t, c, "securityContext", "runAsNonRoot") != true || at(t, pod, "securityContext", "runAsNonRoot") != true {
		t.Error("runAsNonRoot must be set")
	}
	if at(t, c, "securityContext", "readOnlyRootFilesystem") != true {
		t.Error("readOnlyRootFilesystem must be set")
	}
	for _, k := range []string{"requests", "limits"} {
		if at(t, c, "resources", k) == nil {
			t.Errorf("resources.%s missing", k)
		}
	}
	// The grace period must outlast the drain scopegate is configured for.
	cm := objs["ConfigMap"]
	cf, err := settings.ParseConfigFile("scopegate.yaml", []byte(at(t, cm, "data", "scopegate.yaml").(string)))
	if err != nil {
		t.Fatal(err)
	}
	drain := server.DefaultShutdownTimeout
	if v, ok := cf.Value("shutdown_timeout"); ok {
		if drain, err = time.ParseDuration(v); err != nil {
			t.Fatal(err)
		}
	}
	grace := time.Duration(at(t, pod, "terminationGracePeriodSeconds").(int)) * time.Second
	if grace <= drain {
		t.Errorf("terminationGracePeriodSeconds %v does not outlast shutdown_timeout %v", grace, drain)
	}
	// The config names the policy where the ConfigMap is mounted, and the
	// policy compiles (keys aside: they come from the issuer at run time).
	mount := at(t, c, "volumeMounts", 0, "mountPath").(string)
	policyPath, _ := cf.Value("policy")
	if filepath.Dir(policyPath) != mount {
		t.Errorf("policy %q is not in the ConfigMap mount %q", policyPath, mount)
	}
	policy := at(t, cm, "data", filepath.Base(policyPath)).(string)
	if _, err := decision.Compile([]byte(policy), "configmap policy.yaml", decision.CompileOptions{}); err != nil {
		t.Errorf("the ConfigMap's policy does not compile: %v", err)
	}
	// The PDB and Service select the Deployment's pods.
	labels := at(t, dep, "spec", "template", "metadata", "labels").(map[string]any)
	for kind, sel := range map[string]any{
		"PodDisruptionBudget": at(t, objs["PodDisruptionBudget"], "spec", "selector", "matchLabels"),
		"Service":             at(t, objs["Service"], "spec", "selector"),
	} {
		for k, v := range sel.(map[string]any) {
			if labels[k] != v {
				t.Errorf("%s selects %s=%v, which the pods do not carry", kind, k, v)
			}
		}
	}
	if min, ok := at(t, objs["PodDisruptionBudget"], "spec", "minAvailable").(int); ok {
		if replicas := at(t, dep, "spec", "replicas").(int); min >= replicas {
			t.Errorf("minAvailable %d leaves no pod to evict of %d replicas", min, replicas)
		}
	}
}

func TestDockerfile(t *testing.T) {
	b, err := os.ReadFile("docker/Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	df := string(b)
	if n := strings.Count(df, "\nFROM "); n < 2 {
		t.Errorf("%d stages, want a multi-stage build", n)
	}
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", "-buildid=", "USER 65532", "./cmd/scopegate",
		"FROM gcr.io/distroless/static-debian12:nonroot"} {
		if !strings.Contains(df, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
}

// TestImagesPinned: every image the examples deploy names a version (or a
// digest), never :latest or no tag at all, so a rollout is repeatable.
func TestImagesPinned(t *testing.T) {
	files, err := filepath.Glob("kubernetes/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests: %v", err)
	}
	imageRE := regexp.MustCompile(`(?m)^\s*(?:-\s*)?image:\s*["']?([^"'\s#]+)`)
	n := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range imageRE.FindAllStringSubmatch(string(b), -1) {
			n++
			if msg := imageProblem(m[1]); msg != "" {
				t.Errorf("%s: image %s: %s", f, m[1], msg)
			}
		}
	}
	if n == 0 {
		t.Error("no image: lines found in examples/kubernetes")
	}
	for img, bad := range map[string]bool{"ghcr.io/scopegate/scopegate:latest": true, "ghcr.io/scopegate/scopegate": true,
		"localhost:5000/scopegate": true, "ghcr.io/scopegate/scopegate:0.2.0": false, "ghcr.io/x/y@sha256:" + strings.Repeat("a", 64): false} {
		if got := imageProblem(img) != ""; got != bad {
			t.Errorf("imageProblem(%q) refuses: %v, want %v", img, got, bad)
		}
	}
}

func imageProblem(img string) string {
	if strings.Contains(img, "@sha256:") {
		return ""
	}
	name := img[strings.LastIndex(img, "/")+1:]
	_, tag, ok := strings.Cut(name, ":")
	switch {
	case !ok:
		return "no tag: it means :latest; pin a released version"
	case tag == "latest":
		return ":latest moves; pin a released version"
	}
	return ""
}

// alertRules reads examples/prometheus/alerts.yaml.
type alertRule struct {
	Alert       string            `yaml:"alert"`
	Expr        string            `yaml:"expr"`
	For         string            `yaml:"for"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

func alertRules(t *testing.T) []alertRule {
	t.Helper()
	return alertRulesIn(t, "prometheus/alerts.yaml")
}

// alertRulesIn reads the rule file at path.
func alertRulesIn(t *testing.T, path string) []alertRule {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Groups []struct {
			Name  string      `yaml:"name"`
			Rules []alertRule `yaml:"rules"`
		} `yaml:"groups"`
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var out []alertRule
	for _, g := range f.Groups {
		if g.Name == "" {
			t.Error("a rule group without a name")
		}
		out = append(out, g.Rules...)
	}
	return out
}

// exportedFamilies starts a real server, feeds every metric the server
// exports only when fed (drift, deprecated scopes, revocation, audit,
// ownership), and returns what one scrape holds: family name → label
// names seen.
func exportedFamilies(t *testing.T) map[string]map[string]bool {
	t.Helper()
	dir := t.TempDir()
	signer, err := decisiontest.NewECSigner("k1")
	if err != nil {
		t.Fatal(err)
	}
	policy, err := os.ReadFile("testdata/alerts-policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{"policy.yaml": policy, "jwks.json": decisiontest.JWKS(signer)} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	s, err := server.NewServer(server.Config{PolicyPath: filepath.Join(dir, "policy.yaml"), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	m := s.Metrics()
	m.ObserveDrift("app", "items:read", "monitor")
	m.ObserveDeprecated("items:v1")
	m.SetRevocationSyncAge(func() float64 { return 1 })
	m.AuditDropped(func(emit func(kind, reason string, n uint64)) { emit("deny", "buffer_full", 0) })
	m.SetOwnershipStats(func() (uint64, uint64) { return 0, 0 })
	if err := s.Reload(); err != nil { // both reload results have series
		t.Fatal(err)
	}
	fams, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string]bool{}
	for _, f := range fams {
		labels := map[string]bool{}
		for _, mm := range f.GetMetric() {
			for _, l := range mm.GetLabel() {
				labels[l.GetName()] = true
			}
		}
		out[f.GetName()] = labels
		if f.GetType().String() == "HISTOGRAM" {
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				l := map[string]bool{"le": suffix == "_bucket"}
				for k := range labels {
					l[k] = true
				}
				out[f.GetName()+suffix] = l
			}
		}
	}
	return out
}

var (
	// selectorRE finds a scopegate metric and its label matchers, if any.
	selectorRE = regexp.MustCompile(`\b(scopegate_[a-z0-9_]+)\b(\{[^}]*\})?`)
	matcherRE  = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)`)
)

// TestAlertRulesNameExportedMetrics: every metric an alert expression
// names, and every label it matches on, is one a running scopegate
// exports; and the alerts the operations guide promises exist.
func TestAlertRulesNameExportedMetrics(t *testing.T) {
	exported := exportedFamilies(t)
	rules := alertRules(t)
	seen := map[string]bool{}
	for _, r := range rules {
		t.Run(r.Alert, func(t *testing.T) {
			if r.Alert == "" || strings.TrimSpace(r.Expr) == "" {
				t.Fatal("a rule needs alert and expr")
			}
			if seen[r.Alert] {
				t.Errorf("alert %s is defined twice", r.Alert)
			}
			seen[r.Alert] = true
			if r.Labels["severity"] == "" || r.Annotations["summary"] == "" {
				t.Error("a rule needs labels.severity and annotations.summary")
			}
			if r.For != "" {
				if _, err := time.ParseDuration(r.For); err != nil {
					t.Errorf("for %q: %v", r.For, err)
				}
			}
			if strings.Count(r.Expr, "(") != strings.Count(r.Expr, ")") || strings.Count(r.Expr, "{") != strings.Count(r.Expr, "}") {
				t.Errorf("unbalanced brackets in %q", r.Expr)
			}
			matches := selectorRE.FindAllStringSubmatch(r.Expr, -1)
			if len(matches) == 0 {
				t.Fatalf("expr names no scopegate metric: %q", r.Expr)
			}
			for _, m := range matches {
				labels, ok := exported[m[1]]
				if !ok {
					t.Errorf("%s is not a metric scopegate exports", m[1])
					continue
				}
				for _, lm := range matcherRE.FindAllStringSubmatch(m[2], -1) {
					if !labels[lm[1]] {
						t.Errorf("%s has no label %q", m[1], lm[1])
					}
				}
			}
		})
	}
	for _, want := range []string{"ScopegateDriftDetected", "ScopegateDeprecatedScopeInUse", "ScopegateRevocationSyncStale", "ScopegateJWKSRefreshFailing", "ScopegatePolicyReloadFailing"} {
		if !seen[want] {
			t.Errorf("alerts.yaml has no %s", want)
		}
	}
}

// TestAlertMetricCheckBites: the metric check rejects a name scopegate
// does not export, so a rename cannot pass unnoticed.
func TestAlertMetricCheckBites(t *testing.T) {
	exported := exportedFamilies(t)
	for _, name := range []string{"scopegate_drift_count", "scopegate_jwks_age_seconds_bucket", "scopegate_decision_duration_seconds_total"} {
		if _, ok := exported[name]; ok {
			t.Errorf("%s counted as exported", name)
		}
	}
	for _, name := range []string{"scopegate_drift_total", "scopegate_decision_duration_seconds_bucket", "scopegate_scope_sunset_timestamp_seconds", "scopegate_revocation_sync_age_seconds"} {
		if _, ok := exported[name]; !ok {
			t.Errorf("%s not exported", name)
		}
	}
}
