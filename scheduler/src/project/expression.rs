//! The conditional expression language of `(?)` (spec §3.3): the Jinja2
//! `{% if … %}` subset BuildStream projects use, with Python semantics for
//! equality, membership and truthiness.
//!
//! Key decision: a tiny recursive-descent parser over a token list; values are
//! [`Value`]s (bool, string, list, none), names come from a caller's lookup.

use std::fmt;

/// A value in an expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `True` / `False`.
    Bool(bool),
    /// A string.
    Str(String),
    /// A list (flags and element-mask options are sorted lists of strings).
    List(Vec<Value>),
    /// `None`.
    None,
}

impl Value {
    /// Python truthiness.
    pub fn truthy(&self) -> bool {
        match self {
            Value::Bool(b) => *b,
            Value::Str(s) => !s.is_empty(),
            Value::List(l) => !l.is_empty(),
            Value::None => false,
        }
    }
}

/// Why an expression could not be evaluated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ExpressionError(pub String);

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Name(String),
    Str(String),
    Op(&'static str),
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Token::Name(n) => write!(f, "{n}"),
            Token::Str(s) => write!(f, "'{s}'"),
            Token::Op(o) => write!(f, "{o}"),
        }
    }
}

fn tokenize(text: &str) -> Result<Vec<Token>, ExpressionError> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '\'' || c == '"' {
            let mut s = String::new();
            i += 1;
            loop {
                match chars.get(i) {
                    None => return Err(ExpressionError("unexpected end of string".into())),
                    Some(&q) if q == c => break,
                    Some('\\') => {
                        i += 1;
                        match chars.get(i) {
                            Some('n') => s.push('\n'),
                            Some('t') => s.push('\t'),
                            Some(&other) => s.push(other),
                            None => return Err(ExpressionError("unexpected end of string".into())),
                        }
                    }
                    Some(&other) => s.push(other),
                }
                i += 1;
            }
            i += 1;
            tokens.push(Token::Str(s));
        } else if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            tokens.push(Token::Name(chars[start..i].iter().collect()));
        } else {
            let two: String = chars[i..chars.len().min(i + 2)].iter().collect();
            let op = match two.as_str() {
                "==" => Some("=="),
                "!=" => Some("!="),
                "<=" => Some("<="),
                ">=" => Some(">="),
                _ => None,
            };
            if let Some(op) = op {
                tokens.push(Token::Op(op));
                i += 2;
                continue;
            }
            let op = match c {
                '(' => "(",
                ')' => ")",
                '[' => "[",
                ']' => "]",
                ',' => ",",
                '<' => "<",
                '>' => ">",
                _ => return Err(ExpressionError(format!("unexpected char '{c}'"))),
            };
            tokens.push(Token::Op(op));
            i += 1;
        }
    }
    Ok(tokens)
}

struct Parser<'a, F: Fn(&str) -> Option<Value>> {
    tokens: Vec<Token>,
    pos: usize,
    lookup: &'a F,
}

impl<F: Fn(&str) -> Option<Value>> Parser<'_, F> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn is_name(&self, name: &str) -> bool {
        matches!(self.peek(), Some(Token::Name(n)) if n == name)
    }

    fn is_op(&self, op: &str) -> bool {
        matches!(self.peek(), Some(Token::Op(o)) if *o == op)
    }

    fn expect_op(&mut self, op: &str) -> Result<(), ExpressionError> {
        if self.is_op(op) {
            self.pos += 1;
            Ok(())
        } else {
            Err(ExpressionError(format!(
                "expected '{op}', got {}",
                self.peek().map(|t| format!("'{t}'")).unwrap_or_else(|| "end of expression".into())
            )))
        }
    }

    fn or(&mut self) -> Result<Value, ExpressionError> {
        let mut left = self.and()?;
        while self.is_name("or") {
            self.pos += 1;
            let right = self.and()?;
            left = if left.truthy() { left } else { right };
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Value, ExpressionError> {
        let mut left = self.not()?;
        while self.is_name("and") {
            self.pos += 1;
            let right = self.not()?;
            left = if left.truthy() { right } else { left };
        }
        Ok(left)
    }

    fn not(&mut self) -> Result<Value, ExpressionError> {
        if self.is_name("not") {
            self.pos += 1;
            let v = self.not()?;
            return Ok(Value::Bool(!v.truthy()));
        }
        self.comparison()
    }

    fn comparison(&mut self) -> Result<Value, ExpressionError> {
        let mut left = self.primary()?;
        loop {
            let op = if self.is_op("==") || self.is_op("!=") || self.is_op("<") || self.is_op(">") || self.is_op("<=") || self.is_op(">=") {
                match self.peek() {
                    Some(Token::Op(o)) => *o,
                    _ => break,
                }
            } else if self.is_name("in") {
                "in"
            } else if self.is_name("not") && matches!(self.tokens.get(self.pos + 1), Some(Token::Name(n)) if n == "in") {
                self.pos += 1;
                "not in"
            } else {
                break;
            };
            self.pos += 1;
            let right = self.primary()?;
            left = Value::Bool(compare(op, &left, &right)?);
        }
        Ok(left)
    }

    fn primary(&mut self) -> Result<Value, ExpressionError> {
        let token = self.peek().cloned().ok_or_else(|| ExpressionError("unexpected end of expression".into()))?;
        self.pos += 1;
        match token {
            Token::Str(s) => Ok(Value::Str(s)),
            Token::Name(n) => match n.as_str() {
                "True" | "true" => Ok(Value::Bool(true)),
                "False" | "false" => Ok(Value::Bool(false)),
                "None" | "none" => Ok(Value::None),
                "and" | "or" | "not" | "in" | "if" | "else" => Err(ExpressionError(format!("unexpected '{n}'"))),
                _ => (self.lookup)(&n).ok_or_else(|| ExpressionError(format!("'{n}' is undefined"))),
            },
            Token::Op("(") => {
                let v = self.or()?;
                self.expect_op(")")?;
                Ok(v)
            }
            Token::Op("[") => {
                let mut items = Vec::new();
                if !self.is_op("]") {
                    loop {
                        items.push(self.or()?);
                        if self.is_op(",") {
                            self.pos += 1;
                            if self.is_op("]") {
                                break;
                            }
                        } else {
                            break;
                        }
                    }
                }
                self.expect_op("]")?;
                Ok(Value::List(items))
            }
            other => Err(ExpressionError(format!("unexpected '{other}'"))),
        }
    }
}

fn compare(op: &str, a: &Value, b: &Value) -> Result<bool, ExpressionError> {
    match op {
        "==" => Ok(a == b),
        "!=" => Ok(a != b),
        "in" | "not in" => {
            let found = match b {
                Value::List(items) => items.contains(a),
                Value::Str(hay) => match a {
                    Value::Str(needle) => hay.contains(needle.as_str()),
                    _ => return Err(ExpressionError("'in <string>' requires string as left operand".into())),
                },
                _ => return Err(ExpressionError("argument of type is not iterable".into())),
            };
            Ok(if op == "in" { found } else { !found })
        }
        _ => match (a, b) {
            (Value::Str(x), Value::Str(y)) => Ok(match op {
                "<" => x < y,
                ">" => x > y,
                "<=" => x <= y,
                _ => x >= y,
            }),
            _ => Err(ExpressionError(format!("'{op}' not supported between these values"))),
        },
    }
}

/// Evaluates `text`; names are looked up with `lookup` (unknown → error).
pub fn evaluate<F: Fn(&str) -> Option<Value>>(text: &str, lookup: &F) -> Result<bool, ExpressionError> {
    let tokens = tokenize(text)?;
    let mut parser = Parser { tokens, pos: 0, lookup };
    let value = parser.or()?;
    if let Some(rest) = parser.peek() {
        return Err(ExpressionError(format!("unexpected '{rest}'")));
    }
    Ok(value.truthy())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(name: &str) -> Option<Value> {
        match name {
            "pony" => Some(Value::Bool(true)),
            "animal" => Some(Value::Str("horsy".into())),
            "flags" => Some(Value::List(vec![Value::Str("a".into()), Value::Str("b".into())])),
            _ => None,
        }
    }

    #[test]
    fn python_semantics() {
        assert!(evaluate("pony", &ctx).unwrap());
        assert!(evaluate("pony == True", &ctx).unwrap());
        assert!(!evaluate("not pony", &ctx).unwrap());
        assert!(evaluate("animal == 'horsy' and pony", &ctx).unwrap());
        assert!(evaluate("\"a\" in flags", &ctx).unwrap());
        assert!(evaluate("'c' not in flags", &ctx).unwrap());
        assert!(evaluate("flags == ['a', 'b']", &ctx).unwrap());
        assert!(!evaluate("flags == ['b', 'a']", &ctx).unwrap());
        assert!(evaluate("(animal == 'pony') or (animal == 'horsy')", &ctx).unwrap());
    }

    #[test]
    fn undefined_names_and_syntax_errors_fail() {
        assert!(evaluate("zebra == 'x'", &ctx).is_err());
        assert!(evaluate("animal ==", &ctx).is_err());
        assert!(evaluate("animal == 'x' )", &ctx).is_err());
    }
}
