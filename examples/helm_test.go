package examples_test

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/scopegate/scopegate/cmd/scopegate/settings"
	"github.com/scopegate/scopegate/decision"
)

const chartDir = "helm/scopegate"

// helmBinary finds helm, or skips: CI installs it and sets
// SCOPEGATE_TEST_HELM=1, which turns a missing helm into a failure.
func helmBinary(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("helm"); err == nil {
		return p
	}
	if gopath, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		p := filepath.Join(strings.TrimSpace(string(gopath)), "bin", "helm")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if os.Getenv("SCOPEGATE_TEST_HELM") == "1" {
		t.Fatal("SCOPEGATE_TEST_HELM=1 but helm is not installed (go install helm.sh/helm/v3/cmd/helm@v3.22.0)")
	}
	t.Skip("helm is not installed; set SCOPEGATE_TEST_HELM=1 after `go install helm.sh/helm/v3/cmd/helm@v3.22.0` to run the chart tests")
	return ""
}

func runHelm(t *testing.T, helm string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(helm, args...)
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+t.TempDir(), "HELM_CONFIG_HOME="+t.TempDir(), "HELM_DATA_HOME="+t.TempDir())
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if err != nil {
		return out.String() + errb.String(), err
	}
	return out.String(), nil
}

// rendered is one `helm template` output, decoded strictly into the
// Kubernetes API types: an unknown or misspelt field fails the decode.
type rendered struct {
	deployments   map[string]*appsv1.Deployment
	services      map[string]*corev1.Service
	configMaps    map[string]*corev1.ConfigMap
	secrets       map[string]*corev1.Secret
	pdbs          map[string]*policyv1.PodDisruptionBudget
	netpols       map[string]*networkingv1.NetworkPolicy
	custom        map[string]map[string]any // kind/name → object, for CRDs
	customKinds   []string
	namespaceOf   map[string]string // kind/name → namespace
	documentCount int
}

func decodeStrict[T any](t *testing.T, doc []byte, what string) *T {
	t.Helper()
	var v T
	if err := sigsyaml.UnmarshalStrict(doc, &v); err != nil {
		t.Fatalf("%s does not decode strictly into its Kubernetes type: %v\n%s", what, err, doc)
	}
	return &v
}

func renderChart(t *testing.T, helm string, valueFiles ...string) *rendered {
	t.Helper()
	args := []string{"template", "scopegate", chartDir, "--namespace", "scopegate"}
	for _, f := range valueFiles {
		args = append(args, "-f", f)
	}
	out, err := runHelm(t, helm, args...)
	if err != nil {
		t.Fatalf("helm %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	r := &rendered{
		deployments: map[string]*appsv1.Deployment{}, services: map[string]*corev1.Service{},
		configMaps: map[string]*corev1.ConfigMap{}, secrets: map[string]*corev1.Secret{},
		pdbs: map[string]*policyv1.PodDisruptionBudget{}, netpols: map[string]*networkingv1.NetworkPolicy{},
		custom: map[string]map[string]any{}, namespaceOf: map[string]string{},
	}
	for _, doc := range regexp.MustCompile(`(?m)^---\s*$`).Split(out, -1) {
		if strings.TrimSpace(stripComments(doc)) == "" {
			continue
		}
		r.documentCount++
		var head struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Metadata   struct {
				Name      string `json:"name"`
				Namespace string `json:"namespace"`
			} `json:"metadata"`
		}
		if err := sigsyaml.Unmarshal([]byte(doc), &head); err != nil {
			t.Fatalf("a rendered document is not YAML: %v\n%s", err, doc)
		}
		if head.APIVersion == "" || head.Kind == "" || head.Metadata.Name == "" {
			t.Fatalf("a rendered document lacks apiVersion, kind or metadata.name:\n%s", doc)
		}
		key := head.Kind + "/" + head.Metadata.Name
		r.namespaceOf[key] = head.Metadata.Namespace
		b := []byte(doc)
		switch head.Kind {
		case "Deployment":
			r.deployments[head.Metadata.Name] = decodeStrict[appsv1.Deployment](t, b, key)
		case "Service":
			r.services[head.Metadata.Name] = decodeStrict[corev1.Service](t, b, key)
		case "ConfigMap":
			r.configMaps[head.Metadata.Name] = decodeStrict[corev1.ConfigMap](t, b, key)
		case "Secret":
			r.secrets[head.Metadata.Name] = decodeStrict[corev1.Secret](t, b, key)
		case "PodDisruptionBudget":
			r.pdbs[head.Metadata.Name] = decodeStrict[policyv1.PodDisruptionBudget](t, b, key)
		case "NetworkPolicy":
			r.netpols[head.Metadata.Name] = decodeStrict[networkingv1.NetworkPolicy](t, b, key)
		case "ServiceMonitor", "AuthorizationPolicy":
			var m map[string]any
			if err := sigsyaml.Unmarshal(b, &m); err != nil {
				t.Fatal(err)
			}
			r.custom[key] = m
			r.customKinds = append(r.customKinds, head.Kind)
		default:
			t.Fatalf("the chart renders a %s the test does not know; decode it strictly here", head.Kind)
		}
	}
	return r
}

func stripComments(doc string) string {
	var b strings.Builder
	for _, l := range strings.Split(doc, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			b.WriteString(l)
			b.WriteByte('\n')
		}
	}
	return b.String()
}

func chartValues(t *testing.T, files ...string) map[string]any {
	t.Helper()
	merged := map[string]any{}
	for _, f := range append([]string{filepath.Join(chartDir, "values.yaml")}, files...) {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var v map[string]any
		if err := yaml.Unmarshal(b, &v); err != nil {
			t.Fatal(err)
		}
		mergeValues(merged, v)
	}
	return merged
}

// mergeValues merges src into dst as helm does: maps deeply, anything
// else replaced.
func mergeValues(dst, src map[string]any) {
	for k, v := range src {
		if sm, ok := v.(map[string]any); ok {
			if dm, ok := dst[k].(map[string]any); ok {
				mergeValues(dm, sm)
				continue
			}
		}
		dst[k] = v
	}
}

func TestHelmLint(t *testing.T) {
	helm := helmBinary(t)
	for _, vals := range [][]string{nil, {"testdata/helm/values-full.yaml"}, {"testdata/helm/values-grpc-only.yaml"}} {
		args := []string{"lint", "--strict", chartDir}
		for _, f := range vals {
			args = append(args, "-f", f)
		}
		if out, err := runHelm(t, helm, args...); err != nil {
			t.Errorf("helm %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// TestHelmValuesSchemaBites: values.schema.json refuses what the chart
// cannot deploy, before anything is rendered.
func TestHelmValuesSchemaBites(t *testing.T) {
	helm := helmBinary(t)
	for _, c := range []struct{ set, want string }{
		{"replicaCount=three", "replicaCount"},
		{"image.tag=latest", "tag"},
		{"ports.grpc=70000", "grpc"},
		{"logLevel=verbose", "logLevel"},
		{"replicas=3", "replicas"},
		{"settings.grpc_addr=0.0.0.0:1", "settings"},
		{"networkPolicy.checkFrom=null", "checkFrom"},
		{"networkPolicy.metricsFrom=null", "metricsFrom"},
	} {
		out, err := runHelm(t, helm, "template", "scopegate", chartDir, "--set", c.set)
		if err == nil {
			t.Errorf("--set %s rendered; the schema should refuse it", c.set)
			continue
		}
		if !strings.Contains(out, c.want) {
			t.Errorf("--set %s: the error does not name %q:\n%s", c.set, c.want, out)
		}
	}
	// The ServiceMonitor needs the metrics Service; the Istio policy needs
	// a selector.
	for set, want := range map[string]string{
		"metrics.serviceMonitor.enabled=true":    "metrics.service.enabled",
		"istio.authorizationPolicy.enabled=true": "istio.authorizationPolicy.selector",
	} {
		out, err := runHelm(t, helm, "template", "scopegate", chartDir, "--set", set)
		if err == nil || !strings.Contains(out, want) {
			t.Errorf("--set %s: want a failure naming %s, got err=%v\n%s", set, want, err, out)
		}
	}
}

func TestHelmTemplate(t *testing.T) {
	helm := helmBinary(t)
	chart, err := os.ReadFile(filepath.Join(chartDir, "Chart.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var meta struct {
		AppVersion string `yaml:"appVersion"`
	}
	if err := yaml.Unmarshal(chart, &meta); err != nil || meta.AppVersion == "" {
		t.Fatalf("Chart.yaml has no appVersion: %v", err)
	}
	for _, c := range []struct {
		name  string
		files []string
	}{
		{"default", nil},
		{"full", []string{"testdata/helm/values-full.yaml"}},
		{"grpc-only", []string{"testdata/helm/values-grpc-only.yaml"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := renderChart(t, helm, c.files...)
			v := chartValues(t, c.files...)
			checkRendered(t, r, v, meta.AppVersion)
		})
	}
}

func get[T any](t *testing.T, v map[string]any, keys ...string) T {
	t.Helper()
	var cur any = v
	for _, k := range keys {
		m, ok := cur.(map[string]any)
		if !ok {
			t.Fatalf("values: %v is not a map", keys)
		}
		cur = m[k]
	}
	out, ok := cur.(T)
	if !ok {
		t.Fatalf("values %v: %T, not %T", keys, cur, out)
	}
	return out
}

func checkRendered(t *testing.T, r *rendered, v map[string]any, appVersion string) {
	t.Helper()
	if len(r.deployments) != 1 {
		t.Fatalf("%d Deployments rendered, want 1", len(r.deployments))
	}
	var dep *appsv1.Deployment
	for _, d := range r.deployments {
		dep = d
	}
	pod := dep.Spec.Template
	podLabels := pod.Labels
	if len(pod.Spec.Containers) != 1 {
		t.Fatalf("%d containers", len(pod.Spec.Containers))
	}
	c := pod.Spec.Containers[0]

	// Image: pinned to a release, never latest.
	tag := get[string](t, v, "image", "tag")
	if tag == "" {
		tag = appVersion
	}
	if want := get[string](t, v, "image", "repository") + ":" + tag; c.Image != want {
		t.Errorf("image %q, want %q", c.Image, want)
	}
	if strings.HasSuffix(c.Image, ":latest") || !strings.Contains(c.Image, ":") {
		t.Errorf("image %q is not pinned to a version", c.Image)
	}
	if got, want := *dep.Spec.Replicas, int32(get[int](t, v, "replicaCount")); got != want {
		t.Errorf("replicas %d, want %d", got, want)
	}

	// Ports, and the listeners the settings bind.
	httpOn := get[bool](t, v, "http", "enabled")
	wantPorts := map[string]int32{"grpc": int32(get[int](t, v, "ports", "grpc")), "metrics": int32(get[int](t, v, "ports", "metrics"))}
	if httpOn {
		wantPorts["http"] = int32(get[int](t, v, "ports", "http"))
	}
	gotPorts := map[string]int32{}
	for _, p := range c.Ports {
		gotPorts[p.Name] = p.ContainerPort
	}
	if !reflect.DeepEqual(gotPorts, wantPorts) {
		t.Errorf("container ports %v, want %v", gotPorts, wantPorts)
	}
	for _, probe := range []struct {
		name string
		p    *corev1.Probe
		path string
	}{{"readiness", c.ReadinessProbe, "/readyz"}, {"liveness", c.LivenessProbe, "/healthz"}, {"startup", c.StartupProbe, "/healthz"}} {
		if probe.p == nil || probe.p.HTTPGet == nil {
			t.Errorf("%s probe missing or not HTTP", probe.name)
			continue
		}
		if probe.p.HTTPGet.Path != probe.path || probe.p.HTTPGet.Port.String() != "metrics" {
			t.Errorf("%s probe %s on %s, want %s on metrics", probe.name, probe.p.HTTPGet.Path, probe.p.HTTPGet.Port.String(), probe.path)
		}
	}
	sc := c.SecurityContext
	if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot ||
		sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Error("the container must run non-root, read-only, without privilege escalation")
	}
	if pod.Spec.SecurityContext == nil || pod.Spec.SecurityContext.RunAsNonRoot == nil || !*pod.Spec.SecurityContext.RunAsNonRoot {
		t.Error("the pod must run non-root")
	}
	if c.Resources.Limits.Memory().IsZero() || c.Resources.Requests.Cpu().IsZero() {
		t.Error("resources must set a memory limit and a CPU request")
	}

	// Settings: the listeners on the container's ports, the policy where it
	// is mounted, a drain the grace period outlasts.
	settingsCM := r.configMaps[dep.Name]
	if settingsCM == nil {
		t.Fatalf("no settings ConfigMap %s", dep.Name)
	}
	cf, err := settings.ParseConfigFile("scopegate.yaml", []byte(settingsCM.Data["scopegate.yaml"]))
	if err != nil {
		t.Fatalf("the settings do not parse as a scopegate config file: %v", err)
	}
	for key, port := range map[string]string{"grpc_addr": "grpc", "metrics_addr": "metrics", "http_addr": "http"} {
		got, _ := cf.Value(key)
		want := ""
		if p, ok := wantPorts[port]; ok {
			want = "0.0.0.0:" + itoa(p)
		}
		if got != want {
			t.Errorf("setting %s = %q, want %q", key, got, want)
		}
	}
	drain, err := time.ParseDuration(get[string](t, v, "shutdownTimeout"))
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := cf.Value("shutdown_timeout"); got != get[string](t, v, "shutdownTimeout") {
		t.Errorf("shutdown_timeout %q, want %q", got, get[string](t, v, "shutdownTimeout"))
	}
	if grace := time.Duration(*pod.Spec.TerminationGracePeriodSeconds) * time.Second; grace <= drain+5*time.Second {
		t.Errorf("terminationGracePeriodSeconds %v does not outlast shutdown_timeout %v plus the preStop pause", grace, drain)
	}
	for k, val := range get[map[string]any](t, v, "settings") {
		if got, ok := cf.Value(k); !ok || got != toString(val) {
			t.Errorf("extra setting %s = %q, want %v", k, got, val)
		}
	}
	policyPath, _ := cf.Value("policy")
	mounts := map[string]corev1.VolumeMount{}
	for _, m := range c.VolumeMounts {
		mounts[m.Name] = m
		if !m.ReadOnly {
			t.Errorf("volume %s is mounted writable", m.Name)
		}
	}
	if mounts["policy"].MountPath != filepath.Dir(policyPath) {
		t.Errorf("policy %s is not in the policy mount %s", policyPath, mounts["policy"].MountPath)
	}
	volumes := map[string]corev1.Volume{}
	for _, vol := range pod.Spec.Volumes {
		volumes[vol.Name] = vol
	}
	policyCM := volumes["policy"].ConfigMap
	if policyCM == nil {
		t.Fatal("the policy volume is not a ConfigMap")
	}
	if existing := get[string](t, v, "existingPolicyConfigMap"); existing != "" {
		if policyCM.Name != existing || r.configMaps[existing] != nil {
			t.Errorf("policy ConfigMap %s rendered=%v, want the existing %s and none rendered", policyCM.Name, r.configMaps[existing] != nil, existing)
		}
	} else {
		cm := r.configMaps[policyCM.Name]
		if cm == nil {
			t.Fatalf("the policy ConfigMap %s is not rendered", policyCM.Name)
		}
		// Compile, not Load: the key files are mounted at run time.
		if _, err := decision.Compile([]byte(cm.Data["policy.yaml"]), "chart policy.yaml", decision.CompileOptions{}); err != nil {
			t.Errorf("the chart's policy does not compile: %v", err)
		}
	}
	keyFiles := get[map[string]any](t, v, "keys", "files")
	if len(keyFiles) > 0 {
		sec := r.secrets[volumes["keys"].Secret.SecretName]
		if sec == nil || mounts["keys"].MountPath != "/etc/scopegate/keys" {
			t.Fatal("key files are not rendered into a Secret mounted at /etc/scopegate/keys")
		}
		for name := range keyFiles {
			if _, ok := sec.StringData[name]; !ok {
				t.Errorf("key file %s missing from the Secret", name)
			}
		}
	} else if _, ok := volumes["keys"]; ok {
		t.Error("a keys volume without key files")
	}
	if s := get[string](t, v, "envFromSecret"); s != "" {
		if len(c.EnvFrom) != 1 || c.EnvFrom[0].SecretRef == nil || c.EnvFrom[0].SecretRef.Name != s {
			t.Errorf("envFrom does not name the Secret %s", s)
		}
	}
	for _, cm := range r.configMaps {
		for k, d := range cm.Data {
			if strings.Contains(d, "PRIVATE KEY") || strings.Contains(d, `"d":`) {
				t.Errorf("ConfigMap %s key %s holds private key material", cm.Name, k)
			}
		}
	}

	// Services: the check ports on one, the metrics port only on its own.
	selects := func(sel map[string]string) bool {
		for k, val := range sel {
			if podLabels[k] != val {
				return false
			}
		}
		return len(sel) > 0
	}
	check := r.services[dep.Name]
	if check == nil {
		t.Fatal("no check Service")
	}
	var checkPorts []string
	for _, p := range check.Spec.Ports {
		checkPorts = append(checkPorts, p.Name)
		if p.TargetPort.String() != p.Name {
			t.Errorf("Service port %s targets %s", p.Name, p.TargetPort.String())
		}
	}
	wantCheck := []string{"grpc"}
	if httpOn {
		wantCheck = append(wantCheck, "http")
	}
	if !slices.Equal(checkPorts, wantCheck) {
		t.Errorf("check Service ports %v, want %v (never metrics)", checkPorts, wantCheck)
	}
	if !selects(check.Spec.Selector) {
		t.Errorf("check Service selector %v does not select the pods %v", check.Spec.Selector, podLabels)
	}
	metricsSvc := r.services[dep.Name+"-metrics"]
	if get[bool](t, v, "metrics", "service", "enabled") {
		if metricsSvc == nil || len(metricsSvc.Spec.Ports) != 1 || metricsSvc.Spec.Ports[0].Name != "metrics" || !selects(metricsSvc.Spec.Selector) {
			t.Errorf("metrics Service: want one port, metrics, selecting the pods; got %+v", metricsSvc)
		}
	} else if metricsSvc != nil {
		t.Error("a metrics Service rendered while metrics.service.enabled is false")
	}
	if len(r.services) > 2 {
		t.Errorf("%d Services rendered", len(r.services))
	}

	// NetworkPolicy: check ports from checkFrom only, metrics from
	// metricsFrom only.
	if get[bool](t, v, "networkPolicy", "enabled") {
		np := r.netpols[dep.Name]
		if np == nil {
			t.Fatal("no NetworkPolicy")
		}
		if !slices.Equal(np.Spec.PolicyTypes, []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}) {
			t.Errorf("policyTypes %v, want [Ingress]", np.Spec.PolicyTypes)
		}
		if !selects(np.Spec.PodSelector.MatchLabels) {
			t.Errorf("NetworkPolicy selects %v, not the pods", np.Spec.PodSelector.MatchLabels)
		}
		peers := func(key string) string {
			b, _ := json.Marshal(get[[]any](t, v, "networkPolicy", key))
			return string(b)
		}
		seen := map[string]string{}
		for _, rule := range np.Spec.Ingress {
			from, _ := json.Marshal(rule.From)
			if len(rule.From) == 0 {
				t.Error("an ingress rule admits every peer")
			}
			for _, p := range rule.Ports {
				if p.Port == nil {
					t.Error("an ingress rule admits every port")
					continue
				}
				seen[p.Port.String()] = normJSON(t, from)
			}
		}
		for _, port := range wantCheck {
			if seen[port] != normJSON(t, []byte(peers("checkFrom"))) {
				t.Errorf("port %s is admitted from %s, want networkPolicy.checkFrom %s", port, seen[port], peers("checkFrom"))
			}
		}
		if seen["metrics"] != normJSON(t, []byte(peers("metricsFrom"))) {
			t.Errorf("the metrics port is admitted from %s, want networkPolicy.metricsFrom %s", seen["metrics"], peers("metricsFrom"))
		}
		if len(seen) != len(wantCheck)+1 {
			t.Errorf("the NetworkPolicy opens ports %v", seen)
		}
	}

	// PodDisruptionBudget.
	if get[bool](t, v, "podDisruptionBudget", "enabled") {
		pdb := r.pdbs[dep.Name]
		if pdb == nil || !selects(pdb.Spec.Selector.MatchLabels) {
			t.Fatal("no PodDisruptionBudget selecting the pods")
		}
		if pdb.Spec.MinAvailable.IntValue() >= int(*dep.Spec.Replicas) {
			t.Errorf("minAvailable %s leaves no pod to evict of %d", pdb.Spec.MinAvailable.String(), *dep.Spec.Replicas)
		}
	} else if len(r.pdbs) > 0 {
		t.Error("a PodDisruptionBudget rendered while disabled")
	}

	// Optional objects.
	if get[bool](t, v, "metrics", "serviceMonitor", "enabled") {
		sm := r.custom["ServiceMonitor/"+dep.Name]
		if sm == nil {
			t.Fatal("no ServiceMonitor")
		}
		sel := at(t, sm, "spec", "selector", "matchLabels").(map[string]any)
		for k, val := range sel {
			if metricsSvc.Labels[k] != val {
				t.Errorf("the ServiceMonitor selects %s=%v, which the metrics Service lacks", k, val)
			}
		}
		if at(t, sm, "spec", "endpoints", 0, "port") != "metrics" {
			t.Error("the ServiceMonitor does not scrape the metrics port")
		}
	}
	if get[bool](t, v, "istio", "authorizationPolicy", "enabled") {
		ap := r.custom["AuthorizationPolicy/"+dep.Name]
		if ap == nil {
			t.Fatal("no AuthorizationPolicy")
		}
		if at(t, ap, "spec", "action") != "CUSTOM" || at(t, ap, "spec", "provider", "name") != get[string](t, v, "istio", "authorizationPolicy", "provider") {
			t.Error("the AuthorizationPolicy must be CUSTOM with the configured provider")
		}
		if ns := get[string](t, v, "istio", "authorizationPolicy", "namespace"); ns != "" && r.namespaceOf["AuthorizationPolicy/"+dep.Name] != ns {
			t.Errorf("AuthorizationPolicy in %s, want %s", r.namespaceOf["AuthorizationPolicy/"+dep.Name], ns)
		}
	}
	if get[bool](t, v, "dashboard", "enabled") {
		cm := r.configMaps[dep.Name+"-dashboard"]
		want, err := os.ReadFile(filepath.Join(chartDir, "dashboards", "scopegate.json"))
		if err != nil {
			t.Fatal(err)
		}
		if cm == nil || normJSON(t, []byte(cm.Data["scopegate.json"])) != normJSON(t, want) {
			t.Error("the dashboard ConfigMap does not hold dashboards/scopegate.json")
		}
		if cm != nil && cm.Labels["grafana_dashboard"] != "1" {
			t.Error("the dashboard ConfigMap lacks the Grafana sidecar label")
		}
	}
}

func normJSON(t *testing.T, b []byte) string {
	t.Helper()
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("not JSON: %v: %s", err, b)
	}
	out, _ := json.Marshal(v)
	return string(out)
}

func itoa(n int32) string { return toString(int(n)) }

func toString(v any) string {
	b, _ := json.Marshal(v)
	return strings.Trim(string(b), `"`)
}

// byRE finds the labels an aggregation groups by.
var byRE = regexp.MustCompile(`\b(?:by|without)\s*\(([^)]*)\)`)

// TestDashboardQueriesNameExportedMetrics: every metric a dashboard query
// names, every label it matches on or groups by, is one a running
// scopegate exports, so no panel can go blank after a rename.
func TestDashboardQueriesNameExportedMetrics(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(chartDir, "dashboards", "scopegate.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Title  string `json:"title"`
		UID    string `json:"uid"`
		Panels []struct {
			Type    string `json:"type"`
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Name  string `json:"name"`
				Query any    `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatal(err)
	}
	if dash.Title == "" || dash.UID == "" {
		t.Fatal("the dashboard needs a title and a uid")
	}
	// orders-full with an audit log and revocations, and a server with
	// introspection and a Shared Signals transmitter.
	exported := scrapedLabels(scrapeOrdersFull(t), scrapeIdentity(t))
	queries := map[string]string{}
	for _, p := range dash.Panels {
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for i, tg := range p.Targets {
			queries[p.Title+"#"+itoa(int32(i))] = tg.Expr
		}
	}
	for _, v := range dash.Templating.List {
		if q, ok := v.Query.(map[string]any); ok {
			queries["variable "+v.Name] = q["query"].(string)
		}
	}
	// Labels Prometheus adds to every scraped series.
	scrapeLabels := map[string]bool{"instance": true, "job": true}
	covered := map[string]bool{}
	for name, q := range queries {
		matches := selectorRE.FindAllStringSubmatch(q, -1)
		if len(matches) == 0 {
			t.Errorf("%s names no scopegate metric: %q", name, q)
			continue
		}
		union := map[string]bool{}
		for _, m := range matches {
			labels, ok := exported[m[1]]
			if !ok {
				t.Errorf("%s: %s is not a metric scopegate exports", name, m[1])
				continue
			}
			covered[strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(m[1], "_bucket"), "_count"), "_sum")] = true
			for l := range labels {
				union[l] = true
			}
			for _, lm := range matcherRE.FindAllStringSubmatch(m[2], -1) {
				if !labels[lm[1]] && !scrapeLabels[lm[1]] {
					t.Errorf("%s: %s has no label %q", name, m[1], lm[1])
				}
			}
		}
		for _, g := range byRE.FindAllStringSubmatch(q, -1) {
			for _, l := range strings.Split(g[1], ",") {
				if l = strings.TrimSpace(l); l != "" && !union[l] && !scrapeLabels[l] {
					t.Errorf("%s groups by %q, which none of its metrics has", name, l)
				}
			}
		}
		if lv := regexp.MustCompile(`label_values\(\s*(scopegate_[a-z0-9_]+)\s*,\s*([a-z_]+)\s*\)`).FindStringSubmatch(q); lv != nil {
			if !exported[lv[1]][lv[2]] && !scrapeLabels[lv[2]] {
				t.Errorf("%s: %s has no label %s", name, lv[1], lv[2])
			}
		}
	}
	// The panels the issue of record promises.
	for _, want := range []string{"scopegate_decisions_total", "scopegate_decision_duration_seconds", "scopegate_drift_total",
		"scopegate_revocation_sync_age_seconds", "scopegate_jwks_age_seconds", "scopegate_audit_dropped_total",
		"scopegate_introspection_requests_total", "scopegate_ssf_enforcement_lag_seconds", "scopegate_ssf_events_applied_total"} {
		if !covered[want] {
			t.Errorf("no dashboard panel shows %s", want)
		}
	}
}
