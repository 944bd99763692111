package jsonv

import "reflect"

// AsList returns v as a list: a []any as it is, any other slice or array
// element by element. ok is false for anything else.
func AsList(v any) (list []any, ok bool) {
	if l, ok := v.([]any); ok {
		return l, true
	}
	rv := reflect.ValueOf(v)
	if k := rv.Kind(); k != reflect.Slice && k != reflect.Array {
		return nil, false
	}
	list = make([]any, rv.Len())
	for i := range list {
		list[i] = rv.Index(i).Interface()
	}
	return list, true
}
