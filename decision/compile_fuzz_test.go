package decision

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// FuzzCompilePolicy feeds any bytes to the policy compiler. No input may
// panic it, a rejection must name its problems, and a policy that compiles
// must compile again to the same decision table: the same routes in the
// same order with the same templates, methods and scopes, and the same
// decision on a set of probe requests.
func FuzzCompilePolicy(f *testing.F) {
	for _, dir := range []string{filepath.Join("testdata", "policies"), filepath.Join("testdata", "constraints"), filepath.Join("testdata", "governance")} {
		files, _ := filepath.Glob(filepath.Join(dir, "*.yaml"))
		for _, name := range files {
			data, err := os.ReadFile(name)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(data)
		}
	}
	f.Add([]byte(fuzzPolicy))
	keys := StaticKeyResolver(StaticKeys{})
	clock := func() time.Time { return fuzzNow }
	f.Fuzz(func(t *testing.T, data []byte) {
		p1, err1 := Compile(data, "fuzz.yaml", CompileOptions{})
		p2, err2 := Compile(data, "fuzz.yaml", CompileOptions{})
		if (err1 == nil) != (err2 == nil) {
			t.Fatalf("compiling twice: %v, then %v", err1, err2)
		}
		if err1 != nil {
			le, ok := err1.(*LoadError)
			if !ok || len(le.Problems) == 0 {
				t.Fatalf("rejection without problems: %v", err1)
			}
			for _, p := range le.Problems {
				if p.Message == "" || strings.Contains(p.Message, "internal error") {
					t.Fatalf("problem %v", p)
				}
			}
			if err1.Error() != err2.Error() {
				t.Fatalf("two compilations report different problems:\n%v\n%v", err1, err2)
			}
			return
		}
		if p1.Version != p2.Version {
			t.Fatalf("versions %q and %q", p1.Version, p2.Version)
		}
		if len(p1.Routes) != len(p2.Routes) {
			t.Fatalf("%d routes, then %d", len(p1.Routes), len(p2.Routes))
		}
		for i, a := range p1.Routes {
			b := p2.Routes[i]
			if a.Name != b.Name || a.Template != b.Template || a.Public != b.Public ||
				!slices.Equal(a.Methods, b.Methods) || !slices.Equal(a.AllOf, b.AllOf) ||
				!slices.Equal(a.AnyOf, b.AnyOf) || !slices.Equal(a.ParamNames, b.ParamNames) {
				t.Fatalf("route %d differs:\n%+v\n%+v", i, a, b)
			}
		}
		e1, err := NewEngine(p1, Options{Clock: clock, TokenCacheSize: 64, Keys: keys})
		if err != nil {
			t.Fatal(err)
		}
		defer e1.Close()
		e2, err := NewEngine(p2, Options{Clock: clock, TokenCacheSize: 64, Keys: keys})
		if err != nil {
			t.Fatal(err)
		}
		defer e2.Close()
		probes := []string{"/", "/orders/1", "/orders", "/admin/x/y", "/healthz", "/r/1", "/t", "/api/items/1"}
		for _, r := range p1.Routes {
			// A path the route's own template matches, params filled in.
			probes = append(probes, strings.NewReplacer("{", "", "}", "", "...", "").Replace(r.Template))
		}
		for _, path := range probes {
			for _, m := range []string{"GET", "POST", "DELETE"} {
				for _, authz := range []string{"", "Bearer abc.def.ghi"} {
					req := Request{Method: m, Path: path, Authorization: authz, AuthorizationCount: min(len(authz), 1)}
					d1 := e1.Decide(context.Background(), &req)
					d2 := e2.Decide(context.Background(), &req)
					if d1.Allow != d2.Allow || d1.Code != d2.Code || fuzzRouteName(d1.Route) != fuzzRouteName(d2.Route) {
						t.Fatalf("%s %s: %s (route %q), then %s (route %q)", m, path, d1.Code, fuzzRouteName(d1.Route), d2.Code, fuzzRouteName(d2.Route))
					}
					if d1.Allow && (d1.Route == nil || !d1.Route.Public) {
						t.Fatalf("%s %s allowed without a valid token on route %q", m, path, fuzzRouteName(d1.Route))
					}
				}
			}
		}
	})
}

func fuzzRouteName(r *Route) string {
	if r == nil {
		return ""
	}
	return r.Name
}
