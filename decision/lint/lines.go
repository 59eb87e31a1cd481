package lint

import (
	"go.yaml.in/yaml/v3"
)

// lines finds the line of a value of a YAML document by its path of
// mapping keys (string) and list indexes (int), so that findings point at
// the line to fix. It follows aliases; a path that does not exist answers
// the line of its deepest existing element, or 0.
type lines struct{ root *yaml.Node }

func newLines(data []byte) lines {
	var doc yaml.Node
	if yaml.Unmarshal(data, &doc) != nil || len(doc.Content) == 0 {
		return lines{}
	}
	return lines{root: doc.Content[0]}
}

func (l lines) line(path ...any) int {
	n, line := l.root, 0
	for _, p := range path {
		if n == nil {
			break
		}
		for i := 0; n.Kind == yaml.AliasNode && n.Alias != nil && i < 32; i++ {
			n = n.Alias
		}
		var at, next *yaml.Node
		switch p := p.(type) {
		case string:
			if n.Kind == yaml.MappingNode {
				for i := 0; i+1 < len(n.Content); i += 2 {
					if n.Content[i].Value == p {
						at, next = n.Content[i], n.Content[i+1]
						break
					}
				}
			}
		case int:
			if n.Kind == yaml.SequenceNode && p >= 0 && p < len(n.Content) {
				at, next = n.Content[p], n.Content[p]
			}
		}
		if at == nil {
			break
		}
		line, n = at.Line, next
	}
	return line
}
