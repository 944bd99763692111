package dsl

import (
	"reflect"
	"strconv"
	"strings"
)

// Schema kinds: the files the JSON Schema can describe.
var schemaRoots = map[string]reflect.Type{
	"flow":    reflect.TypeOf(Flow{}),
	"mapping": reflect.TypeOf(MappingFile{}),
	"test":    reflect.TypeOf(TestFile{}),
	"config":  reflect.TypeOf(Config{}),
}

// SchemaKinds lists the file kinds JSONSchema accepts.
func SchemaKinds() []string { return []string{"flow", "mapping", "test", "config"} }

// JSONSchema returns a draft-07 JSON Schema of one kind of file ("flow",
// "mapping", "test", "config"), generated from the same struct tags the
// decoder uses. yaml-language-server reads it for completion and checks.
func JSONSchema(kind string) map[string]any {
	root, ok := schemaRoots[kind]
	if !ok {
		return nil
	}
	g := &schemaGen{defs: map[string]any{}}
	s := g.object(root)
	s["$schema"] = "http://json-schema.org/draft-07/schema#"
	s["$id"] = "https://conveyor.run/schema/" + kind + ".json"
	s["title"] = "Conveyor " + kind + " file"
	s["definitions"] = g.defs
	return s
}

type schemaGen struct {
	defs map[string]any
}

var exprSchema = map[string]any{
	"type":        []string{"string", "number", "boolean", "null"},
	"description": "An expr expression; literal text goes in quotes inside: '\"USD\"'",
}

func (g *schemaGen) ref(name string, build func() map[string]any) map[string]any {
	if _, ok := g.defs[name]; !ok {
		g.defs[name] = true // placeholder against recursion
		g.defs[name] = build()
	}
	return map[string]any{"$ref": "#/definitions/" + name}
}

func (g *schemaGen) of(t reflect.Type, f *field) map[string]any {
	var s map[string]any
	switch t {
	case reflect.TypeOf(Expr{}):
		s = map[string]any{"type": exprSchema["type"], "description": exprSchema["description"]}
	case reflect.TypeOf(Template{}):
		s = map[string]any{"type": "string", "description": "Text with {{ expression }} parts"}
	case reflect.TypeOf(ExprMap{}):
		s = map[string]any{"type": "object", "additionalProperties": exprSchema}
	case reflect.TypeOf(SetSpec{}):
		s = map[string]any{"type": "object", "additionalProperties": exprSchema,
			"propertyNames": map[string]any{"pattern": pathRE.String()}}
	case reflect.TypeOf(MapTree{}):
		s = g.ref("mapNode", g.mapNode)
	case reflect.TypeOf(Value{}):
		s = map[string]any{}
	case reflect.TypeOf(ConfigString{}):
		s = map[string]any{"type": "string", "description": "Text; ${env:NAME} or ${env:NAME:-default} is read from the environment at load"}
	case reflect.TypeOf(Duration{}):
		s = map[string]any{"type": "string", "pattern": `^([0-9]+d|([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+)$`, "description": "Duration such as 500ms, 30s, 5m, 72h or 3d"}
	case reflect.TypeOf(ByteSize{}):
		s = map[string]any{"type": []string{"string", "integer"}, "pattern": sizeRE.String()}
	case reflect.TypeOf(Mock{}):
		resp := g.ref("MockResponse", func() map[string]any { return g.object(reflect.TypeOf(MockResponse{})) })
		s = map[string]any{"oneOf": []any{resp, map[string]any{"type": "array", "items": resp}}}
	case reflect.TypeOf(LogStep{}):
		s = map[string]any{"oneOf": []any{exprSchema, g.object(t)}}
	}
	if s == nil {
		switch t.Kind() {
		case reflect.Pointer:
			return g.of(t.Elem(), f)
		case reflect.Struct:
			s = g.ref(t.Name(), func() map[string]any { return g.object(t) })
		case reflect.Slice:
			s = map[string]any{"type": "array", "items": g.of(t.Elem(), nil)}
		case reflect.Map:
			s = map[string]any{"type": "object", "additionalProperties": g.of(t.Elem(), nil)}
		case reflect.String:
			s = map[string]any{"type": "string"}
		case reflect.Int, reflect.Int64:
			s = map[string]any{"type": "integer"}
		case reflect.Bool:
			s = map[string]any{"type": "boolean"}
		}
	}
	if f == nil {
		return s
	}
	if _, isRef := s["$ref"]; isRef && (f.desc != "" || f.def != "") {
		s = map[string]any{"allOf": []any{s}}
	}
	if f.desc != "" {
		s["description"] = f.desc
	}
	if f.def != "" {
		s["default"] = f.def
		if n, err := strconv.Atoi(f.def); err == nil && t.Kind() == reflect.Int {
			s["default"] = n
		}
	}
	if len(f.enum) > 0 {
		s["enum"] = f.enum
	}
	if f.min != "" {
		n, _ := strconv.Atoi(f.min)
		s["minimum"] = n
	}
	if f.pattern != "" {
		s["pattern"] = f.pattern
	}
	return s
}

func (g *schemaGen) object(t reflect.Type) map[string]any {
	props := map[string]any{}
	var required []string
	var kinds []any
	for _, f := range structFields(t) {
		f := f
		props[f.name] = g.of(t.Field(f.index).Type, &f)
		if f.required {
			required = append(required, f.name)
		}
		if f.kind {
			kinds = append(kinds, map[string]any{"required": []string{f.name}})
		}
	}
	s := map[string]any{"type": "object", "properties": props, "additionalProperties": false}
	if len(required) > 0 {
		s["required"] = required
	}
	if len(kinds) > 0 {
		s["oneOf"] = kinds
	}
	if doc := typeDocs[t.Name()]; doc != "" {
		s["description"] = doc
	}
	return s
}

func (g *schemaGen) mapNode() map[string]any {
	node := map[string]any{"$ref": "#/definitions/mapNode"}
	return map[string]any{
		"description": "A map value: an expression, an object of fields (nested maps build objects; use: names a mapping file), or a list",
		"anyOf": []any{
			exprSchema,
			map[string]any{"type": "object", "properties": map[string]any{"use": map[string]any{"type": "string", "description": "Name of a mapping file in mappings/"}}, "additionalProperties": node},
			map[string]any{"type": "array", "items": node},
		},
	}
}

// typeDocs are the object descriptions shown on hover.
var typeDocs = map[string]string{
	"Step":    "One step: exactly one of " + strings.Join(kindNames(structFields(reflect.TypeOf(Step{}))), ", "),
	"Trigger": "Exactly one of " + strings.Join(kindNames(structFields(reflect.TypeOf(Trigger{}))), ", "),
}
