package rules

import "fmt"

// The syntax tree.
type node interface{ position() Pos }

type (
	litNode struct {
		pos Pos
		val Value
	}
	identNode struct {
		pos  Pos
		name string
	}
	// memberNode is x.name or x["name"].
	memberNode struct {
		pos  Pos
		x    node
		name string
	}
	callNode struct {
		pos  Pos
		fn   string
		args []node
	}
	unaryNode struct {
		pos Pos
		op  string
		x   node
	}
	binaryNode struct {
		pos  Pos
		op   string
		x, y node
	}
	listNode struct {
		pos   Pos
		items []node
	}
)

func (n *litNode) position() Pos    { return n.pos }
func (n *identNode) position() Pos  { return n.pos }
func (n *memberNode) position() Pos { return n.pos }
func (n *callNode) position() Pos   { return n.pos }
func (n *unaryNode) position() Pos  { return n.pos }
func (n *binaryNode) position() Pos { return n.pos }
func (n *listNode) position() Pos   { return n.pos }

// maxDepth bounds nesting, so a hostile rule cannot exhaust the stack.
const maxDepth = 100

type parser struct {
	rule  string
	toks  []token
	i     int
	depth int
}

// parse parses src into a syntax tree.
func parse(rule, src string) (node, error) {
	toks, err := lex(rule, src)
	if err != nil {
		return nil, err
	}
	p := &parser{rule: rule, toks: toks}
	if p.peek().kind == tokEOF {
		return nil, p.errorf(p.peek().pos, "empty rule")
	}
	n, err := p.expr(0)
	if err != nil {
		return nil, err
	}
	if t := p.peek(); t.kind != tokEOF {
		return nil, p.errorf(t.pos, "unexpected %s after a complete expression", t)
	}
	return n, nil
}

func (p *parser) peek() token { return p.toks[p.i] }
func (p *parser) next() token {
	t := p.toks[p.i]
	if t.kind != tokEOF {
		p.i++
	}
	return t
}

func (p *parser) errorf(pos Pos, format string, a ...any) error {
	return &Error{Rule: p.rule, Pos: pos, Msg: fmt.Sprintf(format, a...)}
}

func (p *parser) expect(op string) (token, error) {
	t := p.next()
	if t.kind != tokOp || t.text != op {
		return t, p.errorf(t.pos, "expected %q, found %s", op, t)
	}
	return t, nil
}

// binding powers of the binary operators
func infixPower(t token) int {
	if t.kind == tokIdent && t.text == "in" {
		return 4
	}
	if t.kind != tokOp {
		return 0
	}
	switch t.text {
	case "||":
		return 1
	case "&&":
		return 2
	case "==", "!=":
		return 3
	case "<", "<=", ">", ">=":
		return 4
	case "+", "-":
		return 5
	case "*", "/", "%":
		return 6
	}
	return 0
}

// expr parses an expression whose operators bind tighter than minPower.
func (p *parser) expr(minPower int) (node, error) {
	p.depth++
	defer func() { p.depth-- }()
	if p.depth > maxDepth {
		return nil, p.errorf(p.peek().pos, "rule nested more than %d deep", maxDepth)
	}
	left, err := p.unary()
	if err != nil {
		return nil, err
	}
	for {
		t := p.peek()
		power := infixPower(t)
		if power <= minPower {
			return left, nil
		}
		p.next()
		right, err := p.expr(power)
		if err != nil {
			return nil, err
		}
		left = &binaryNode{pos: t.pos, op: t.text, x: left, y: right}
	}
}

func (p *parser) unary() (node, error) {
	t := p.peek()
	if t.kind == tokOp && (t.text == "!" || t.text == "-") {
		p.next()
		p.depth++
		defer func() { p.depth-- }()
		if p.depth > maxDepth {
			return nil, p.errorf(t.pos, "rule nested more than %d deep", maxDepth)
		}
		x, err := p.unary()
		if err != nil {
			return nil, err
		}
		return &unaryNode{pos: t.pos, op: t.text, x: x}, nil
	}
	return p.postfix()
}

func (p *parser) postfix() (node, error) {
	n, err := p.primary()
	if err != nil {
		return nil, err
	}
	for {
		t := p.peek()
		switch {
		case t.kind == tokOp && t.text == ".":
			p.next()
			name := p.next()
			if name.kind != tokIdent {
				return nil, p.errorf(name.pos, "expected a field name after \".\", found %s", name)
			}
			n = &memberNode{pos: name.pos, x: n, name: name.text}
		case t.kind == tokOp && t.text == "[":
			p.next()
			key := p.next()
			if key.kind != tokString {
				return nil, p.errorf(key.pos, "expected a quoted field name in [], found %s", key)
			}
			if _, err := p.expect("]"); err != nil {
				return nil, err
			}
			n = &memberNode{pos: key.pos, x: n, name: key.text}
		default:
			return n, nil
		}
	}
}

func (p *parser) primary() (node, error) {
	t := p.next()
	switch t.kind {
	case tokNumber:
		return &litNode{pos: t.pos, val: Number(t.num)}, nil
	case tokDuration:
		return &litNode{pos: t.pos, val: Value{Kind: KindDuration, Num: t.num}}, nil
	case tokString:
		return &litNode{pos: t.pos, val: String(t.text)}, nil
	case tokIdent:
		switch t.text {
		case "true", "false":
			return &litNode{pos: t.pos, val: Bool(t.text == "true")}, nil
		case "in":
			return nil, p.errorf(t.pos, "unexpected \"in\": it goes between a value and a list")
		}
		if nt := p.peek(); nt.kind == tokOp && nt.text == "(" {
			p.next()
			var args []node
			for {
				if nt := p.peek(); nt.kind == tokOp && nt.text == ")" {
					p.next()
					break
				}
				if len(args) > 0 {
					if _, err := p.expect(","); err != nil {
						return nil, err
					}
				}
				a, err := p.expr(0)
				if err != nil {
					return nil, err
				}
				args = append(args, a)
			}
			return &callNode{pos: t.pos, fn: t.text, args: args}, nil
		}
		return &identNode{pos: t.pos, name: t.text}, nil
	case tokOp:
		switch t.text {
		case "(":
			n, err := p.expr(0)
			if err != nil {
				return nil, err
			}
			if _, err := p.expect(")"); err != nil {
				return nil, err
			}
			return n, nil
		case "[":
			list := &listNode{pos: t.pos}
			for {
				if nt := p.peek(); nt.kind == tokOp && nt.text == "]" {
					p.next()
					return list, nil
				}
				if len(list.items) > 0 {
					if _, err := p.expect(","); err != nil {
						return nil, err
					}
				}
				item, err := p.expr(0)
				if err != nil {
					return nil, err
				}
				list.items = append(list.items, item)
			}
		}
	}
	return nil, p.errorf(t.pos, "unexpected %s", t)
}
