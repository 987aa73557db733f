// Package shelf keeps books on shelves.
package shelf

import (
	"errors"
	"fmt"
)

// Shelf holds books in order.
type Shelf struct {
	books []string
}

type index struct{}

func New(name string) *Shelf {
	return &Shelf{books: []string{name}}
}

// Documented is documented already: not a task.
func Documented() {}

func (s *Shelf) Add(title, author string, tags ...string) (int, error) {
	if title == "" {
		return 0, errors.New("empty title")
	}
	check := func(value string) bool { return value != "" }
	if !check(author) {
		return 0, fmt.Errorf("no author for %s", title)
	}
	s.books = append(s.books, title)
	return len(s.books), nil
}

func (s Shelf) Len() int {
	return len(s.books)
}

func (s *Shelf) MustGet(i int) string {
	if i < 0 {
		panic("negative index")
	}
	return s.books[i]
}

func (s *Shelf) grow() {}

func (i index) Lookup() {}

func helper() {}

//go:noinline
func Directive() {}

// Flagged is documented, and carries a directive.
//
//go:noinline
func Flagged() {}
