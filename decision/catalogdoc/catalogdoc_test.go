package catalogdoc

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/scopegate/scopegate/decision"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// catalogNow is a Monday; the support client's refund grant expired
// before it.
var catalogNow = time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)

func renderFile(t *testing.T, name string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := Render(context.Background(), &out, data, filepath.Join("testdata", name), Options{Now: catalogNow}); err != nil {
		t.Fatalf("render %s: %v", name, err)
	}
	return out.String()
}

func TestGolden(t *testing.T) {
	for _, name := range []string{"orders.yaml", "nocatalog.yaml"} {
		t.Run(name, func(t *testing.T) {
			got := renderFile(t, name)
			if again := renderFile(t, name); again != got {
				t.Fatal("two renderings of the same policy differ")
			}
			golden := filepath.Join("testdata", strings.TrimSuffix(name, ".yaml")+".golden.md")
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("%s differs from %s (run go test -update after checking the change):\n%s", name, golden, got)
			}
		})
	}
}

// TestAnswers checks the answers the engine gives, independently of the
// golden file.
func TestAnswers(t *testing.T) {
	doc := renderFile(t, "orders.yaml")
	cases := map[string]string{
		"a scope's own constraint applies":       "| `read-order` | all of `orders:read` | none | `GET /orders/example` | deny `source_ip_not_allowed` (403) |",
		"implied scopes open the route too":      "| `update-order` | all of `orders:write` | owner | `PUT /orders/example` | allow (200) |",
		"route constraints decide":               "| `refund-order` | all of `orders:refund` | step_up | `POST /orders/example/refund` | deny `insufficient_user_authentication` (401) |",
		"any_of":                                 "| `export` | any of `orders:export`, `reports:all` | none | `GET /exports/orders` | allow (200) |",
		"retired scopes open nothing":            "It is retired and opens no route",
		"deprecated scopes name their successor": "| Status | deprecated, use `orders:read` instead, sunset 2027-06-30 |",
		"lifetimes":                              "| Lifetime | tokens live at most 15m; tokens are used at most 10m after issue |",
		"table cells are escaped":                `See your orders \| history`,
		"expired grants are not listed":          "| Granted to | `web` |",
		"scopes in no segment":                   "## Scopes in no segment",
	}
	for name, want := range cases {
		t.Run(name, func(t *testing.T) {
			if !strings.Contains(doc, want) {
				t.Errorf("the catalog lacks %q:\n%s", want, doc)
			}
		})
	}
	if strings.Contains(doc, "| Granted to | `support`") {
		t.Error("the expired refund grant is listed")
	}
}

func TestRenderErrors(t *testing.T) {
	var out bytes.Buffer
	err := Render(context.Background(), &out, []byte("routes: []\n"), "bad.yaml", Options{})
	var le *decision.LoadError
	if !errors.As(err, &le) || out.Len() != 0 {
		t.Errorf("err = %v, output %q", err, out.String())
	}
}
