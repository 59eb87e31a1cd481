package scopegate_test

// The intended package graph, as a test: a rule broken by a new import fails
// `go test ./...` (and so `make test` and CI), naming the package, the
// forbidden import and the rule.

import (
	"bytes"
	"encoding/json"
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/scopegate/scopegate"

// listedPackage is what `go list -json` says of one package of the module.
type listedPackage struct {
	ImportPath string
	Dir        string
	GoFiles    []string
	Imports    []string // direct, production files only
	Deps       []string // transitive, production files only
	Module     *struct{ Path string }
	Error      *struct{ Err string }
}

// ours reports whether p is a package of this module (go list -deps also
// lists the standard library and the dependencies).
func (p *listedPackage) ours() bool { return p.Module != nil && p.Module.Path == module }

// rule forbids some imports to the packages it covers.
type rule struct {
	name string
	// covers selects the packages of the module the rule applies to.
	covers func(pkg string) bool
	// direct: only the package's own imports are checked; otherwise every
	// transitive dependency (so a rule cannot be dodged through a helper
	// package).
	direct bool
	// forbidden reports whether importing dep breaks the rule.
	forbidden func(dep string) bool
}

func under(dirs ...string) func(string) bool {
	return func(pkg string) bool {
		for _, d := range dirs {
			p := module + "/" + d
			if pkg == p || strings.HasPrefix(pkg, p+"/") {
				return true
			}
		}
		return false
	}
}

func anyOf(fs ...func(string) bool) func(string) bool {
	return func(dep string) bool {
		for _, f := range fs {
			if f(dep) {
				return true
			}
		}
		return false
	}
}

func prefixes(ps ...string) func(string) bool {
	return func(dep string) bool {
		for _, p := range ps {
			if dep == p || strings.HasPrefix(dep, p+"/") {
				return true
			}
		}
		return false
	}
}

func exactly(ps ...string) func(string) bool {
	return func(dep string) bool { return slices.Contains(ps, dep) }
}

var (
	// RPC, Envoy's API and protobuf: the transport side.
	transport = prefixes("google.golang.org/grpc", "google.golang.org/protobuf", "github.com/envoyproxy",
		"google.golang.org/genproto", "github.com/cncf/xds", "github.com/planetscale/vtprotobuf")
	// Database drivers and clients.
	drivers = prefixes("database/sql", "github.com/jackc", "go.etcd.io/bbolt", "github.com/redis", "modernc.org")
	// I/O a translator must not do: sockets, files, processes, databases.
	doesIO = anyOf(exactly("net", "os", "os/exec", "syscall", "io/ioutil", "net/rpc", "net/smtp", "plugin"), drivers)
)

// translators are the packages that turn a wire protocol into the decision
// model and back: ext_authz, forward-auth and AuthZEN.
var translators = under("envoy", "server/forwardauth", "server/authzen")

// serverSide are the packages of server/ that are not translators: the
// listeners, the funnel, metrics, admin and reload.
func serverSide(dep string) bool { return under("server")(dep) && !translators(dep) }

// testHelpers are the packages that exist for tests: imported by _test
// files and by one another, never by code that ships. servertest/freeport
// is not one of them: the bench harness, which ships, starts nginx on
// ports chosen ahead with it, as the tests start their processes.
var testHelpers = exactly(module+"/decision/decisiontest", module+"/store/storetest", module+"/store/audit/audittest",
	module+"/store/usage/usagetest", module+"/server/replicatest", module+"/server/servertest")

var rules = []rule{
	{
		name:      "decision is the pure core: no transport, no store, server, proto or translator",
		covers:    under("decision"),
		forbidden: anyOf(transport, drivers, prefixes(module+"/store", module+"/server", module+"/proto", module+"/envoy", module+"/cmd", module+"/bench")),
	},
	{
		// net/http reaches decision only through jwx's key-set package,
		// which the core uses for parsing, never for fetching; decision's
		// own code must not import it.
		name:      "decision imports no HTTP",
		covers:    under("decision"),
		direct:    true,
		forbidden: prefixes("net/http"),
	},
	{
		// grpc's root package holds the server and the client connection;
		// codes and status are what a translator may use.
		name:      "translators do no I/O (no sockets, files, processes, databases or gRPC server)",
		covers:    translators,
		direct:    true,
		forbidden: anyOf(doesIO, exactly("google.golang.org/grpc"), serverSide, prefixes(module+"/store", module+"/cmd")),
	},
	{
		name:      "translators reach no store, server or driver through their dependencies",
		covers:    translators,
		forbidden: anyOf(drivers, serverSide, prefixes(module+"/store", module+"/cmd")),
	},
	{
		name:      "the AuthZEN translator is JSON only: no gRPC, protobuf or Envoy API",
		covers:    under("server/authzen"),
		forbidden: transport,
	},
	{
		name:      "shipped code imports no test helper (decisiontest, storetest, ...): mint tokens with decision/tokenmint",
		covers:    func(pkg string) bool { return !testHelpers(pkg) },
		forbidden: testHelpers,
	},
	{
		name:      "store knows no server, proto, translator or transport",
		covers:    under("store"),
		forbidden: anyOf(transport, prefixes(module+"/server", module+"/proto", module+"/envoy", module+"/cmd", module+"/bench")),
	},
	{
		// The command owns the process: SIGHUP reload and SIGTERM
		// shutdown are wired in cmd/scopegate, which calls the server's
		// ReloadFrom and cancels Run's context; flags, environment and
		// the config file are layered in cmd/scopegate/settings, and the
		// server receives a plain Config.
		name:      "server handles no signals and parses no flags: the command does",
		covers:    under("server"),
		forbidden: anyOf(exactly("os/signal", "flag"), prefixes(module+"/cmd")),
	},
	{
		// decision is allowed for its file-reading error texts only: the
		// layering shares the loader's wording for an unreadable file.
		name:      "settings layering knows no server: it works on a flag set",
		covers:    under("cmd/scopegate/settings"),
		forbidden: prefixes(module+"/server", module+"/store", module+"/envoy"),
	},
	{
		name:      "audit and usage import no gRPC or protobuf: only decision and small libraries",
		covers:    under("store/audit", "store/usage"),
		forbidden: anyOf(transport, drivers, prefixes(module+"/store/postgres", module+"/store/bolt", module+"/store/open")),
	},
}

// layers are the top-level directories; every package of the module must
// sit in one, so a package added elsewhere is noticed (and given rules).
var layers = []string{"decision", "envoy", "server", "store", "cmd", "bench", "examples", "proto"}

func goList(t *testing.T) []listedPackage {
	t.Helper()
	cmd := exec.Command("go", "list", "-e", "-deps", "-json=ImportPath,Dir,Module,GoFiles,Imports,Deps,Error", "./...")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	var all []listedPackage
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p listedPackage
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("go list output: %v", err)
		}
		if p.Error != nil && p.Module != nil && p.Module.Path == module {
			t.Fatalf("go list %s: %s", p.ImportPath, p.Error.Err)
		}
		all = append(all, p)
	}
	return all
}

// ourPackages returns the module's packages and every listed package by
// import path.
func ourPackages(t *testing.T) ([]listedPackage, map[string]*listedPackage) {
	all := goList(t)
	byPath := make(map[string]*listedPackage, len(all))
	var ours []listedPackage
	for i := range all {
		byPath[all[i].ImportPath] = &all[i]
		if all[i].ours() {
			ours = append(ours, all[i])
		}
	}
	return ours, byPath
}

func TestPackageGraph(t *testing.T) {
	pkgs, byPath := ourPackages(t)
	if len(pkgs) < 10 {
		t.Fatalf("go list found %d packages of %s: run the test from the module", len(pkgs), module)
	}
	for _, r := range rules {
		covered := 0
		for _, p := range pkgs {
			if !r.covers(p.ImportPath) {
				continue
			}
			covered++
			deps := p.Deps
			if r.direct {
				deps = p.Imports
			}
			var bad []string
			for _, d := range deps {
				if r.forbidden(d) {
					bad = append(bad, d)
				}
			}
			if len(bad) > 0 {
				t.Errorf("%s: breaks the rule %q: %s", p.ImportPath, r.name, culprits(p, bad, r.direct, byPath))
			}
		}
		if covered == 0 {
			t.Errorf("rule %q covers no package: a package was renamed; point the rule at its new path", r.name)
		}
	}
	for _, p := range pkgs {
		rel := strings.TrimPrefix(strings.TrimPrefix(p.ImportPath, module), "/")
		top, _, _ := strings.Cut(rel, "/")
		if rel != "" && !slices.Contains(layers, top) {
			t.Errorf("package %s is outside the layers %v: move it into one (the top level is fixed)", p.ImportPath, layers)
		}
	}
}

// culprits says, for each of p's own imports that brings in a forbidden
// package, which forbidden packages it brings: the import to remove.
func culprits(p listedPackage, bad []string, direct bool, byPath map[string]*listedPackage) string {
	if direct {
		return "imports " + strings.Join(bad, ", ")
	}
	var parts []string
	for _, imp := range p.Imports {
		var brought []string
		if slices.Contains(bad, imp) {
			brought = append(brought, imp)
		}
		if q := byPath[imp]; q != nil {
			for _, b := range bad {
				if b != imp && slices.Contains(q.Deps, b) {
					brought = append(brought, b)
				}
			}
		}
		if len(brought) == 0 {
			continue
		}
		msg := "import " + strconv.Quote(imp)
		if len(brought) > 1 || brought[0] != imp {
			more := ""
			if len(brought) > 3 {
				more = " and " + strconv.Itoa(len(brought)-3) + " more"
				brought = brought[:3]
			}
			msg += " brings " + strings.Join(brought, ", ") + more
		}
		parts = append(parts, msg)
	}
	if len(parts) == 0 {
		return "forbidden " + strings.Join(bad, ", ")
	}
	return strings.Join(parts, "; ")
}

// httpClientUse lists the net/http names that make requests or serve: a
// translator may use net/http's types (Header, Request) but never call
// out or listen.
var httpClientUse = []string{"Get", "Head", "Post", "PostForm", "DefaultClient", "Client", "Transport",
	"DefaultTransport", "ListenAndServe", "ListenAndServeTLS", "Serve", "ServeTLS", "Server", "FileServer", "FS", "Dir", "ServeFile", "ServeContent"}

func TestTranslatorsMakeNoHTTPCalls(t *testing.T) {
	covered := 0
	pkgs, _ := ourPackages(t)
	for _, p := range pkgs {
		if !translators(p.ImportPath) {
			continue
		}
		covered++
		fset := token.NewFileSet()
		for _, name := range p.GoFiles {
			f, err := parser.ParseFile(fset, filepath.Join(p.Dir, name), nil, parser.SkipObjectResolution)
			if err != nil {
				t.Fatal(err)
			}
			httpName := ""
			for _, imp := range f.Imports {
				path, _ := strconv.Unquote(imp.Path.Value)
				if path != "net/http" {
					continue
				}
				httpName = "http"
				if imp.Name != nil {
					httpName = imp.Name.Name
				}
			}
			if httpName == "" {
				continue
			}
			ast.Inspect(f, func(n ast.Node) bool {
				sel, ok := n.(*ast.SelectorExpr)
				if !ok {
					return true
				}
				if id, ok := sel.X.(*ast.Ident); ok && id.Name == httpName && slices.Contains(httpClientUse, sel.Sel.Name) {
					t.Errorf("%s: %s uses %s.%s: a translator does no I/O; make the call in server/ and pass the result in",
						p.ImportPath, fset.Position(sel.Pos()), httpName, sel.Sel.Name)
				}
				return true
			})
		}
	}
	if covered == 0 {
		t.Error("no translator package found: a package was renamed; point translators at its new path")
	}
}
