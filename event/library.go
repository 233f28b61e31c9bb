package event

import "github.com/valyala/fastjson"

// ImportLibrary is the context.library.name that `tailor import` stamps on
// the events it produces that name no library of their own, so that what
// they set is known to come from an import (decision 0026).
const ImportLibrary = "tailor-import"

// Library returns the event's context.library.name, the SDK that sent it
// (analytics.js, analytics-python, ...), or "" when it names none.
func (e *Event) Library() string {
	if e.Context == nil {
		return ""
	}
	v := e.Context.Get("library", "name")
	if v == nil || v.Type() != fastjson.TypeString {
		return ""
	}
	return string(v.GetStringBytes())
}

// StampLibrary sets the event object's context.library.name to name when
// the event names no library (a library that is not an object is
// replaced); an event that names one keeps it. The value is made by a, so
// name must be plain text without control characters (see SetString).
func (e *Event) StampLibrary(a *fastjson.Arena, name string) {
	if e.Library() != "" {
		return
	}
	if e.Context == nil {
		e.Context = a.NewObject()
		e.Root.Set("context", e.Context)
	}
	lib := e.Context.Get("library")
	if lib == nil || lib.Type() != fastjson.TypeObject {
		lib = a.NewObject()
		e.Context.Set("library", lib)
	}
	lib.Set("name", a.NewString(name))
}
