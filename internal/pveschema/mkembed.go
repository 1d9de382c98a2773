//go:build ignore

// mkembed writes pve91.json.gz, the schema embedded in the binary: PVE's
// apidata.json reduced to each method's `returns`, without the prose
// (descriptions, type texts, links) that a check never reads.
//
//	go run mkembed.go /work/shared/pve-api/apidata.json
package main

import (
	"compress/gzip"
	"encoding/json"
	"fmt"
	"os"
)

// prose are schema keywords a check never reads.
var prose = map[string]bool{
	"description": true, "verbose_description": true, "format_description": true,
	"typetext": true, "links": true, "renderer": true, "title": true,
	"default": true, "completion": true,
}

func strip(s any) any {
	m, ok := s.(map[string]any)
	if !ok {
		if l, ok := s.([]any); ok {
			for i := range l {
				l[i] = strip(l[i])
			}
		}
		return s
	}
	out := map[string]any{}
	for k, v := range m {
		if prose[k] {
			continue
		}
		switch k {
		case "properties":
			if pm, ok := v.(map[string]any); ok {
				for pk, pv := range pm {
					pm[pk] = strip(pv)
				}
			}
			out[k] = v
		case "enum", "instance-types":
			out[k] = v
		default:
			out[k] = strip(v)
		}
	}
	return out
}

type node struct {
	Path     string                    `json:"path"`
	Info     map[string]map[string]any `json:"info,omitempty"`
	Children []node                    `json:"children,omitempty"`
}

func reduce(in []map[string]any) []node {
	var out []node
	for _, n := range in {
		r := node{Path: n["path"].(string)}
		if info, ok := n["info"].(map[string]any); ok {
			r.Info = map[string]map[string]any{}
			for m, mi := range info {
				entry := map[string]any{}
				if ret, ok := mi.(map[string]any)["returns"]; ok {
					entry["returns"] = strip(ret)
				}
				r.Info[m] = entry
			}
		}
		if ch, ok := n["children"].([]any); ok {
			var kids []map[string]any
			for _, c := range ch {
				kids = append(kids, c.(map[string]any))
			}
			r.Children = reduce(kids)
		}
		out = append(out, r)
	}
	return out
}

func main() {
	raw, err := os.ReadFile(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	var tree []map[string]any
	if err := json.Unmarshal(raw, &tree); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	b, err := json.Marshal(reduce(tree))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	f, err := os.Create("pve91.json.gz")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	zw, _ := gzip.NewWriterLevel(f, gzip.BestCompression)
	zw.Write(b)
	if err := zw.Close(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if err := f.Close(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("pve91.json.gz: %d bytes of JSON\n", len(b))
}
