//! Just enough of Python's pickle format to read CIFAR's python version.
//!
//! The official files were written by Python 2's cPickle with protocol 2: dicts, lists, ints,
//! Python 2 strings (`SHORT_BINSTRING`/`BINSTRING`) and numpy arrays, which pickle as
//! `numpy.core.multiarray._reconstruct(numpy.ndarray, (0,), 'b')` followed by a `BUILD` with
//! the state `(1, shape, dtype, is_fortran, raw bytes)`, the dtype itself being
//! `numpy.dtype('u1', 0, 1)` plus a `BUILD`. Protocols 3 and 4 (bytes, unicode, frames,
//! `STACK_GLOBAL`, `MEMOIZE`) are read too, so that the same data re-pickled by Python 3 loads.
//! No other object can be built: nothing in a file is ever executed.

use std::collections::HashMap;
use std::rc::Rc;

/// A value of the pickle; strings and the arrays' bytes borrow from the file's bytes.
#[derive(Debug, Clone)]
pub(crate) enum Value<'a> {
    None,
    Bool(bool),
    Int(i64),
    /// A Python 2 `str` or Python 3 `bytes`.
    Bytes(&'a [u8]),
    /// A Python 2 `unicode` or Python 3 `str`.
    Text(&'a str),
    List(Rc<Vec<Value<'a>>>),
    Tuple(Rc<Vec<Value<'a>>>),
    Dict(Rc<Vec<(Value<'a>, Value<'a>)>>),
    /// A module-level name (`module.name`), before it is called.
    Global(&'a str, &'a str),
    /// A numpy dtype, by its type string (`u1`).
    Dtype(&'a str),
    /// A numpy array made by `_reconstruct`, waiting for its state.
    EmptyArray,
    Array(Array<'a>),
}

/// A numpy array of bytes.
#[derive(Debug, Clone)]
pub(crate) struct Array<'a> {
    pub shape: Vec<usize>,
    pub data: &'a [u8],
}

impl<'a> Value<'a> {
    /// The value of `key` in a dict whose keys are strings.
    pub fn get(&self, key: &str) -> Option<&Value<'a>> {
        let Value::Dict(items) = self else { return None };
        items
            .iter()
            .find(|(k, _)| k.text().as_deref() == Some(key))
            .map(|(_, v)| v)
    }

    /// A string as text; Python 2 strings are decoded as latin-1, as torchvision does.
    pub fn text(&self) -> Option<String> {
        match self {
            Value::Bytes(bytes) => Some(bytes.iter().map(|&b| b as char).collect()),
            Value::Text(text) => Some((*text).to_owned()),
            _ => None,
        }
    }

    /// What the value is, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "a bool",
            Value::Int(_) => "an int",
            Value::Bytes(_) | Value::Text(_) => "a string",
            Value::List(_) => "a list",
            Value::Tuple(_) => "a tuple",
            Value::Dict(_) => "a dict",
            Value::Global(..) => "a class or function",
            Value::Dtype(_) => "a numpy dtype",
            Value::EmptyArray | Value::Array(_) => "a numpy array",
        }
    }
}

const PROTO: u8 = 0x80;
const FRAME: u8 = 0x95;
const STOP: u8 = b'.';
const MARK: u8 = b'(';
const POP: u8 = b'0';
const POP_MARK: u8 = b'1';
const DUP: u8 = b'2';
const NONE: u8 = b'N';
const NEWTRUE: u8 = 0x88;
const NEWFALSE: u8 = 0x89;
const BININT: u8 = b'J';
const BININT1: u8 = b'K';
const BININT2: u8 = b'M';
const LONG1: u8 = 0x8a;
const SHORT_BINSTRING: u8 = b'U';
const BINSTRING: u8 = b'T';
const SHORT_BINBYTES: u8 = b'C';
const BINBYTES: u8 = b'B';
const BINBYTES8: u8 = 0x8e;
const SHORT_BINUNICODE: u8 = 0x8c;
const BINUNICODE: u8 = b'X';
const BINUNICODE8: u8 = 0x8d;
const EMPTY_DICT: u8 = b'}';
const EMPTY_LIST: u8 = b']';
const EMPTY_TUPLE: u8 = b')';
const TUPLE: u8 = b't';
const TUPLE1: u8 = 0x85;
const TUPLE2: u8 = 0x86;
const TUPLE3: u8 = 0x87;
const APPEND: u8 = b'a';
const APPENDS: u8 = b'e';
const SETITEM: u8 = b's';
const SETITEMS: u8 = b'u';
const BINPUT: u8 = b'q';
const LONG_BINPUT: u8 = b'r';
const MEMOIZE: u8 = 0x94;
const BINGET: u8 = b'h';
const LONG_BINGET: u8 = b'j';
const GLOBAL: u8 = b'c';
const STACK_GLOBAL: u8 = 0x93;
const REDUCE: u8 = b'R';
const BUILD: u8 = b'b';

/// Reads the pickle in `bytes`; the error says what is wrong and at which byte.
pub(crate) fn load(bytes: &[u8]) -> Result<Value<'_>, String> {
    let mut machine = Machine {
        bytes,
        pos: 0,
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
    };
    machine.run()
}

/// The state of the pickle virtual machine.
struct Machine<'a> {
    bytes: &'a [u8],
    pos: usize,
    stack: Vec<Value<'a>>,
    /// Stack lengths at each `MARK`, innermost last.
    marks: Vec<usize>,
    memo: HashMap<u32, Value<'a>>,
}

impl<'a> Machine<'a> {
    fn run(&mut self) -> Result<Value<'a>, String> {
        loop {
            let at = self.pos;
            let opcode = self.take(1)?[0];
            self.step(opcode)
                .map_err(|e| format!("{e} (opcode 0x{opcode:02x} at byte {at})"))?;
            if opcode == STOP {
                return self.pop();
            }
        }
    }

    /// Executes one opcode.
    fn step(&mut self, opcode: u8) -> Result<(), String> {
        match opcode {
            PROTO => {
                let version = self.take(1)?[0];
                if !(2..=4).contains(&version) {
                    return Err(format!("pickle protocol {version} is not supported (2 to 4 are)"));
                }
            }
            FRAME => {
                self.take(8)?;
            }
            STOP => {}
            MARK => self.marks.push(self.stack.len()),
            POP => {
                self.pop()?;
            }
            POP_MARK => {
                self.pop_mark()?;
            }
            DUP => {
                let top = self.top()?.clone();
                self.stack.push(top);
            }
            NONE => self.stack.push(Value::None),
            NEWTRUE | NEWFALSE => self.stack.push(Value::Bool(opcode == NEWTRUE)),
            BININT => {
                let value = i32::from_le_bytes(self.array()?);
                self.stack.push(Value::Int(value.into()));
            }
            BININT1 => {
                let value = self.take(1)?[0];
                self.stack.push(Value::Int(value.into()));
            }
            BININT2 => {
                let value = u16::from_le_bytes(self.array()?);
                self.stack.push(Value::Int(value.into()));
            }
            LONG1 => {
                let len = self.take(1)?[0] as usize;
                let digits = self.take(len)?;
                self.stack.push(Value::Int(long(digits)?));
            }
            SHORT_BINSTRING | SHORT_BINBYTES => {
                let len = self.take(1)?[0] as usize;
                let bytes = self.take(len)?;
                self.stack.push(Value::Bytes(bytes));
            }
            BINSTRING | BINBYTES => {
                let len = u32::from_le_bytes(self.array()?);
                if opcode == BINSTRING && len > i32::MAX as u32 {
                    return Err("negative string length".to_owned());
                }
                let bytes = self.take(len as usize)?;
                self.stack.push(Value::Bytes(bytes));
            }
            BINBYTES8 => {
                let len = self.len8()?;
                let bytes = self.take(len)?;
                self.stack.push(Value::Bytes(bytes));
            }
            SHORT_BINUNICODE | BINUNICODE | BINUNICODE8 => {
                let len = match opcode {
                    SHORT_BINUNICODE => self.take(1)?[0] as usize,
                    BINUNICODE => u32::from_le_bytes(self.array()?) as usize,
                    _ => self.len8()?,
                };
                let text = std::str::from_utf8(self.take(len)?).map_err(|e| format!("invalid UTF-8 string: {e}"))?;
                self.stack.push(Value::Text(text));
            }
            EMPTY_DICT => self.stack.push(Value::Dict(Rc::default())),
            EMPTY_LIST => self.stack.push(Value::List(Rc::default())),
            EMPTY_TUPLE => self.stack.push(Value::Tuple(Rc::default())),
            TUPLE => {
                let items = self.pop_mark()?;
                self.stack.push(Value::Tuple(Rc::new(items)));
            }
            TUPLE1 | TUPLE2 | TUPLE3 => {
                let n = (opcode - TUPLE1 + 1) as usize;
                let start = self.stack.len().checked_sub(n).ok_or("stack underflow")?;
                let items = self.stack.split_off(start);
                self.stack.push(Value::Tuple(Rc::new(items)));
            }
            APPEND => {
                let item = self.pop()?;
                self.append(vec![item])?;
            }
            APPENDS => {
                let items = self.pop_mark()?;
                self.append(items)?;
            }
            SETITEM => {
                let value = self.pop()?;
                let key = self.pop()?;
                self.set_items(vec![key, value])?;
            }
            SETITEMS => {
                let items = self.pop_mark()?;
                self.set_items(items)?;
            }
            BINPUT | LONG_BINPUT | MEMOIZE => {
                let index = match opcode {
                    BINPUT => self.take(1)?[0].into(),
                    LONG_BINPUT => u32::from_le_bytes(self.array()?),
                    _ => self.memo.len() as u32,
                };
                let top = self.top()?.clone();
                self.memo.insert(index, top);
            }
            BINGET | LONG_BINGET => {
                let index = match opcode {
                    BINGET => self.take(1)?[0].into(),
                    _ => u32::from_le_bytes(self.array()?),
                };
                let value = self
                    .memo
                    .get(&index)
                    .ok_or(format!("memo entry {index} is undefined"))?;
                self.stack.push(value.clone());
            }
            GLOBAL => {
                let module = self.line()?;
                let name = self.line()?;
                self.stack.push(Value::Global(module, name));
            }
            STACK_GLOBAL => {
                let name = self.pop()?;
                let module = self.pop()?;
                let (Value::Text(module), Value::Text(name)) = (module, name) else {
                    return Err("STACK_GLOBAL needs two strings".to_owned());
                };
                self.stack.push(Value::Global(module, name));
            }
            REDUCE => {
                let args = self.pop()?;
                let callable = self.pop()?;
                let value = reduce(callable, args)?;
                self.stack.push(value);
            }
            BUILD => {
                let state = self.pop()?;
                let object = self.pop()?;
                let value = build(object, state)?;
                self.stack.push(value);
            }
            _ => return Err("unsupported opcode: not a CIFAR pickle".to_owned()),
        }
        Ok(())
    }

    /// The next `n` bytes.
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.pos.checked_add(n).filter(|&end| end <= self.bytes.len());
        let end =
            end.ok_or_else(|| format!("truncated: {n} more bytes needed, {} left", self.bytes.len() - self.pos))?;
        let bytes = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let mut array = [0; N];
        array.copy_from_slice(self.take(N)?);
        Ok(array)
    }

    /// An 8-byte length.
    fn len8(&mut self) -> Result<usize, String> {
        usize::try_from(u64::from_le_bytes(self.array()?)).map_err(|_| "length too large".to_owned())
    }

    /// A newline-terminated ASCII line (a `GLOBAL`'s module or name).
    fn line(&mut self) -> Result<&'a str, String> {
        let rest = &self.bytes[self.pos..];
        let len = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or("truncated: unterminated line")?;
        let line = std::str::from_utf8(&rest[..len]).map_err(|_| "a name that is not text".to_owned())?;
        self.pos += len + 1;
        Ok(line)
    }

    fn pop(&mut self) -> Result<Value<'a>, String> {
        self.stack.pop().ok_or_else(|| "stack underflow".to_owned())
    }

    fn top(&self) -> Result<&Value<'a>, String> {
        self.stack.last().ok_or_else(|| "stack underflow".to_owned())
    }

    /// The values pushed since the last mark, which is removed.
    fn pop_mark(&mut self) -> Result<Vec<Value<'a>>, String> {
        let start = self.marks.pop().ok_or("no mark on the stack")?;
        if start > self.stack.len() {
            return Err("the mark was popped".to_owned());
        }
        Ok(self.stack.split_off(start))
    }

    fn append(&mut self, items: Vec<Value<'a>>) -> Result<(), String> {
        match self.stack.last_mut() {
            Some(Value::List(list)) => Rc::make_mut(list).extend(items),
            other => return Err(format!("append to {}", other.map_or("nothing", |v| v.kind()))),
        }
        Ok(())
    }

    /// Adds key, value, key, value… to the dict on the top of the stack.
    fn set_items(&mut self, items: Vec<Value<'a>>) -> Result<(), String> {
        if items.len() % 2 == 1 {
            return Err("a key without a value".to_owned());
        }
        let Some(Value::Dict(dict)) = self.stack.last_mut() else {
            return Err("set an item of something that is not a dict".to_owned());
        };
        let dict = Rc::make_mut(dict);
        let mut items = items.into_iter();
        while let (Some(key), Some(value)) = (items.next(), items.next()) {
            dict.push((key, value));
        }
        Ok(())
    }
}

/// A little-endian two's complement integer of at most 8 bytes.
fn long(digits: &[u8]) -> Result<i64, String> {
    if digits.len() > 8 {
        return Err(format!("a {}-byte integer", digits.len()));
    }
    let fill = if digits.last().is_some_and(|&b| b & 0x80 != 0) {
        0xff
    } else {
        0
    };
    let mut bytes = [fill; 8];
    bytes[..digits.len()].copy_from_slice(digits);
    Ok(i64::from_le_bytes(bytes))
}

/// Calls `callable` with `args`: only numpy's array and dtype constructors are known.
fn reduce<'a>(callable: Value<'a>, args: Value<'a>) -> Result<Value<'a>, String> {
    let Value::Global(module, name) = callable else {
        return Err(format!("cannot call {}", callable.kind()));
    };
    let Value::Tuple(args) = args else {
        return Err(format!("{module}.{name} called with {}", args.kind()));
    };
    match (module, name) {
        ("numpy.core.multiarray" | "numpy._core.multiarray", "_reconstruct") => Ok(Value::EmptyArray),
        ("numpy", "dtype") => match args.first() {
            Some(Value::Bytes(descr)) => std::str::from_utf8(descr)
                .map(Value::Dtype)
                .map_err(|_| "a dtype name that is not text".to_owned()),
            Some(Value::Text(descr)) => Ok(Value::Dtype(descr)),
            _ => Err("numpy.dtype called without a type name".to_owned()),
        },
        _ => Err(format!("unsupported object {module}.{name}")),
    }
}

/// Sets the state of an object made by [`reduce`].
fn build<'a>(object: Value<'a>, state: Value<'a>) -> Result<Value<'a>, String> {
    match object {
        // The state of a one-byte dtype says nothing that matters (byte order, fields).
        Value::Dtype(_) => Ok(object),
        Value::EmptyArray => array(&state).map(Value::Array),
        other => Err(format!("cannot set the state of {}", other.kind())),
    }
}

/// An array from numpy's state tuple `(version, shape, dtype, is_fortran, data)`.
fn array<'a>(state: &Value<'a>) -> Result<Array<'a>, String> {
    let Value::Tuple(items) = state else {
        return Err(format!("a numpy array's state is {}", state.kind()));
    };
    let [_version, Value::Tuple(shape), dtype, fortran, data] = items.as_slice() else {
        return Err("a numpy array's state is not (version, shape, dtype, is_fortran, data)".to_owned());
    };
    let shape = shape
        .iter()
        .map(|d| match d {
            Value::Int(d) => usize::try_from(*d).map_err(|_| format!("negative dimension {d}")),
            other => Err(format!("a dimension is {}", other.kind())),
        })
        .collect::<Result<Vec<_>, _>>()?;
    match dtype {
        Value::Dtype("u1" | "|u1") => {}
        Value::Dtype(other) => return Err(format!("the array holds '{other}' values, not bytes (u1)")),
        other => return Err(format!("the array's dtype is {}", other.kind())),
    }
    if matches!(fortran, Value::Bool(true) | Value::Int(1)) && shape.len() > 1 {
        return Err("the array is in Fortran order".to_owned());
    }
    let Value::Bytes(data) = data else {
        return Err(format!("the array's data is {}", data.kind()));
    };
    let expected = shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .ok_or("the shape overflows")?;
    if data.len() != expected {
        return Err(format!("an array of shape {shape:?} holds {} bytes", data.len()));
    }
    Ok(Array { shape, data })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `{'a': [1, 300, -1], 'b': 'xy'}` as Python 2's cPickle writes it (protocol 2).
    const DICT: &[u8] = b"\x80\x02}q\x00(U\x01aq\x01]q\x02(K\x01M,\x01J\xff\xff\xff\xffeU\x01bq\x03U\x02xyq\x04u.";

    #[test]
    fn reads_dicts_lists_ints_and_strings() {
        let value = load(DICT).unwrap();
        let Some(Value::List(list)) = value.get("a") else {
            panic!("{value:?}")
        };
        let ints: Vec<i64> = list
            .iter()
            .map(|v| if let Value::Int(i) = v { *i } else { panic!() })
            .collect();
        assert_eq!(ints, [1, 300, -1]);
        assert_eq!(value.get("b").and_then(Value::text).as_deref(), Some("xy"));
        assert!(value.get("c").is_none());
    }

    #[test]
    fn reports_truncation_and_unknown_opcodes_with_their_byte() {
        let message = load(&DICT[..20]).unwrap_err();
        assert!(message.contains("truncated"), "{message}");
        let message = load(b"\x80\x02F1.0\n.").unwrap_err();
        assert_eq!(
            message,
            "unsupported opcode: not a CIFAR pickle (opcode 0x46 at byte 2)"
        );
        let message = load(b"\x80\x05N.").unwrap_err();
        assert!(message.starts_with("pickle protocol 5 is not supported"), "{message}");
    }

    #[test]
    fn refuses_to_call_anything_but_numpy_constructors() {
        let message = load(b"\x80\x02cos\nsystem\nU\x02ls\x85R.").unwrap_err();
        assert!(message.starts_with("unsupported object os.system"), "{message}");
    }

    #[test]
    fn negative_and_long_integers() {
        assert_eq!(long(&[0xff]).unwrap(), -1);
        assert_eq!(long(&[0x00, 0x01]).unwrap(), 256);
        assert_eq!(long(&[]).unwrap(), 0);
        assert!(long(&[0; 9]).is_err());
    }
}
