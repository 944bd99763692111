package flows

import "github.com/conveyor-run/conveyor/mappings/jsonv"

func marshal(v any) ([]byte, error) { return jsonv.Marshal(v) }
