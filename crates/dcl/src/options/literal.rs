//! Upstream's Python-literal syntax for dict-valued flags, read into JSON values:
//! `"{'scenario': 'class', 'initial_increment': 4, 'increment': 3}"`.
//!
//! Accepted: dicts with string keys, lists, tuples (as lists), single- or double-quoted
//! strings with backslash escapes, integers, floats, `True`/`False`/`None` and their JSON
//! spellings `true`/`false`/`null`. JSON is therefore accepted as well. A dict that is not a
//! Python literal is read as a YAML flow mapping, as upstream's parser reads its flags:
//! `{scenario: class, increment: 2}`.

use serde_json::{Map, Number, Value};

/// Parses one literal; the error says what was expected and where.
pub fn parse(text: &str) -> Result<Value, String> {
    let mut parser = Parser {
        chars: text.chars().collect(),
        pos: 0,
    };
    let value = parser.value()?;
    parser.skip_space();
    if parser.pos < parser.chars.len() {
        return Err(parser.error("end of input"));
    }
    Ok(value)
}

/// Parses a literal that must be a dict: a Python literal or, failing that, a YAML flow
/// mapping (the error is the Python parser's, which says where it stopped).
pub fn parse_dict(text: &str) -> Result<Map<String, Value>, String> {
    let value = parse(text).or_else(|error| match serde_norway::from_str::<Value>(text) {
        Ok(yaml @ Value::Object(_)) => Ok(yaml),
        _ => Err(error),
    })?;
    match value {
        Value::Object(map) => Ok(map),
        other => Err(format!("expected a dict like {{'key': value}}, not {other}")),
    }
}

struct Parser {
    chars: Vec<char>,
    pos: usize,
}

impl Parser {
    fn error(&self, expected: &str) -> String {
        match self.chars.get(self.pos) {
            Some(c) => format!("expected {expected} at character {}, found '{c}'", self.pos + 1),
            None => format!("expected {expected} at character {}, found the end", self.pos + 1),
        }
    }

    fn skip_space(&mut self) {
        while self.chars.get(self.pos).is_some_and(|c| c.is_whitespace()) {
            self.pos += 1;
        }
    }

    fn peek(&mut self) -> Option<char> {
        self.skip_space();
        self.chars.get(self.pos).copied()
    }

    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn value(&mut self) -> Result<Value, String> {
        match self.peek() {
            Some('{') => self.dict(),
            Some('[') => self.sequence('[', ']'),
            Some('(') => self.sequence('(', ')'),
            Some('\'' | '"') => self.string().map(Value::String),
            Some(c) if c == '-' || c == '+' || c == '.' || c.is_ascii_digit() => self.number(),
            Some(c) if c.is_alphabetic() => self.word(),
            _ => Err(self.error("a value")),
        }
    }

    fn dict(&mut self) -> Result<Value, String> {
        self.pos += 1; // '{'
        let mut map = Map::new();
        loop {
            if self.eat('}') {
                return Ok(Value::Object(map));
            }
            if !matches!(self.peek(), Some('\'' | '"')) {
                return Err(self.error("a quoted key or '}'"));
            }
            let key = self.string()?;
            if !self.eat(':') {
                return Err(self.error("':'"));
            }
            let value = self.value()?;
            if map.insert(key.clone(), value).is_some() {
                return Err(format!("key '{key}' appears twice"));
            }
            if !self.eat(',') && self.peek() != Some('}') {
                return Err(self.error("',' or '}'"));
            }
        }
    }

    fn sequence(&mut self, open: char, close: char) -> Result<Value, String> {
        debug_assert_eq!(self.peek(), Some(open));
        self.pos += 1;
        let mut items = Vec::new();
        loop {
            if self.eat(close) {
                return Ok(Value::Array(items));
            }
            items.push(self.value()?);
            if !self.eat(',') && self.peek() != Some(close) {
                return Err(self.error(&format!("',' or '{close}'")));
            }
        }
    }

    fn string(&mut self) -> Result<String, String> {
        let quote = self.chars[self.pos];
        self.pos += 1;
        let mut out = String::new();
        while let Some(&c) = self.chars.get(self.pos) {
            self.pos += 1;
            match c {
                c if c == quote => return Ok(out),
                '\\' => {
                    let escaped = self
                        .chars
                        .get(self.pos)
                        .copied()
                        .ok_or_else(|| self.error("an escaped character"))?;
                    self.pos += 1;
                    out.push(match escaped {
                        'n' => '\n',
                        't' => '\t',
                        other => other,
                    });
                }
                c => out.push(c),
            }
        }
        Err(self.error(&format!("a closing {quote}")))
    }

    fn number(&mut self) -> Result<Value, String> {
        let start = self.pos;
        while self
            .chars
            .get(self.pos)
            .is_some_and(|c| c.is_ascii_digit() || matches!(c, '-' | '+' | '.' | 'e' | 'E' | '_'))
        {
            self.pos += 1;
        }
        let text: String = self.chars[start..self.pos].iter().filter(|&&c| c != '_').collect();
        if let Ok(integer) = text.parse::<i64>() {
            return Ok(Value::Number(integer.into()));
        }
        text.parse::<f64>()
            .ok()
            .and_then(Number::from_f64)
            .map(Value::Number)
            .ok_or_else(|| format!("'{text}' at character {} is not a number", start + 1))
    }

    fn word(&mut self) -> Result<Value, String> {
        let start = self.pos;
        while self
            .chars
            .get(self.pos)
            .is_some_and(|c| c.is_alphanumeric() || *c == '_')
        {
            self.pos += 1;
        }
        let word: String = self.chars[start..self.pos].iter().collect();
        match word.as_str() {
            "True" | "true" => Ok(Value::Bool(true)),
            "False" | "false" => Ok(Value::Bool(false)),
            "None" | "null" => Ok(Value::Null),
            _ => Err(format!(
                "'{word}' at character {} is not a value (strings need quotes)",
                start + 1
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

        /// Random text and upstream's literals with random edits parse or fail with one line.
        #[test]
        fn any_text_parses_or_fails_with_one_line(
            base in prop::sample::select(vec![
                "{'scenario': 'class', 'initial_increment': 40, 'increment': 30}",
                "[{'epoch': 0, 'optimizer': 'SGD', 'lr': 0.1, 'momentum': 0.9}, {'epoch': 30, 'lr': 1e-2}]",
                "{'rehearsal_ratio': 20, 'global_sampling': True, 'x': None, 'y': (1, -2.5e3)}",
            ]),
            edits in prop::collection::vec((any::<prop::sample::Index>(), any::<char>()), 0..4),
            random in "\\PC{0,30}",
        ) {
            let mut chars: Vec<char> = base.chars().collect();
            for (at, c) in edits {
                let i = at.index(chars.len());
                chars[i] = c;
            }
            for text in [chars.into_iter().collect::<String>(), random] {
                if let Err(error) = parse(&text) {
                    prop_assert!(!error.contains('\n'), "{error}");
                }
            }
        }
    }

    #[test]
    fn reads_the_upstream_readme_examples() {
        assert_eq!(
            parse("{'scenario': 'class', 'initial_increment': 4, 'increment': 3}").unwrap(),
            json!({"scenario": "class", "initial_increment": 4, "increment": 3})
        );
        assert_eq!(
            parse("{'reset_state_dict': True}").unwrap(),
            json!({"reset_state_dict": true})
        );
        assert_eq!(parse("{'lr_min': 1e-6}").unwrap(), json!({"lr_min": 1e-6}));
        assert_eq!(
            parse("{'scenario': 'domain', 'num_tasks': 5, 'concatenate_tasksets': True}").unwrap(),
            json!({"scenario": "domain", "num_tasks": 5, "concatenate_tasksets": true})
        );
    }

    #[test]
    fn reads_nested_values_tuples_none_negatives_and_json() {
        assert_eq!(
            parse(r#"{"a": [1, -2.5, (3, 4)], 'b': None, 'c': {'d': "x\"y"}, 'e': false,}"#).unwrap(),
            json!({"a": [1, -2.5, [3, 4]], "b": null, "c": {"d": "x\"y"}, "e": false})
        );
        assert_eq!(
            parse("[{'epoch': 0, 'lr': 0.1}]").unwrap(),
            json!([{"epoch": 0, "lr": 0.1}])
        );
    }

    #[test]
    fn dicts_may_be_yaml_flow_mappings_as_upstream_reads_them() {
        let yaml = parse_dict("{scenario: class, increment: 2, shuffle_classes: True, class_order: [1, 0]}").unwrap();
        assert_eq!(
            Value::Object(yaml),
            json!({"scenario": "class", "increment": 2, "shuffle_classes": true, "class_order": [1, 0]})
        );
        assert_eq!(parse_dict("{ratio: 2.5, name: None}").unwrap()["ratio"], json!(2.5));
        // Malformed in both syntaxes: the Python parser's message, with its position.
        let error = parse_dict("{'scenario': 'class' 'increment': 2}").unwrap_err();
        assert!(error.starts_with("expected ',' or '}' at character 22"), "{error}");
    }

    #[test]
    fn keeps_key_order() {
        let keys: Vec<String> = parse_dict("{'z': 1, 'a': 2}").unwrap().keys().cloned().collect();
        assert_eq!(keys, vec!["z", "a"]);
    }

    #[test]
    fn errors_say_what_and_where() {
        assert_eq!(parse("{'a' 1}").unwrap_err(), "expected ':' at character 6, found '1'");
        assert_eq!(
            parse("{'a': 1").unwrap_err(),
            "expected ',' or '}' at character 8, found the end"
        );
        assert_eq!(
            parse("{'a': class}").unwrap_err(),
            "'class' at character 7 is not a value (strings need quotes)"
        );
        assert_eq!(
            parse("{a: 1}").unwrap_err(),
            "expected a quoted key or '}' at character 2, found 'a'"
        );
        assert_eq!(parse("{'a': 1, 'a': 2}").unwrap_err(), "key 'a' appears twice");
        assert_eq!(
            parse("{'a': 'open}").unwrap_err(),
            "expected a closing ' at character 13, found the end"
        );
        assert_eq!(
            parse("{} x").unwrap_err(),
            "expected end of input at character 4, found 'x'"
        );
        assert_eq!(
            parse("{'a': 1.2.3}").unwrap_err(),
            "'1.2.3' at character 7 is not a number"
        );
        assert!(parse_dict("[1]").unwrap_err().starts_with("expected a dict"));
    }
}
