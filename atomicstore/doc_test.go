package atomicstore_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"strconv"
	"strings"
	"testing"

	"github.com/whippet-go/whippet/consumer"
)

// TransactionBatch's godoc states the consumer's defaults, which the
// processor inherits: it must state the consumer's current figures.
func TestTransactionBatchDocStatesTheConsumerDefaults(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "options.go", nil, parser.ParseComments)
	if err != nil {
		t.Fatal(err)
	}
	var doc string
	for _, d := range f.Decls {
		if fn, ok := d.(*ast.FuncDecl); ok && fn.Name.Name == "TransactionBatch" {
			doc = fn.Doc.Text()
		}
	}
	if doc == "" {
		t.Fatal("options.go: no documented TransactionBatch")
	}
	doc = strings.Join(strings.Fields(doc), " ")
	for _, want := range []string{thousands(consumer.DefaultTransactionRecords) + " records", consumer.DefaultTransactionInterval.String()} {
		if !strings.Contains(doc, want) {
			t.Errorf("TransactionBatch's doc %q does not state the consumer's default %q", doc, want)
		}
	}
}

// thousands formats n with commas: 100000 → "100,000".
func thousands(n int) string {
	s := strconv.Itoa(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}
