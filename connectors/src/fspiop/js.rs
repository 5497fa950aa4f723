//! JSON as JavaScript sees it, for byte compatibility with Mojaloop's
//! JavaScript reference components: `safe-stable-stringify`'s text (what
//! JWS signatures and ILP fulfilments are computed over), JavaScript's
//! numbers and truthiness.

use serde_json::{Number, Value};

/// JavaScript truthiness of a JSON value.
pub(crate) fn truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => number(n) != 0.0,
        Value::String(s) => !s.is_empty(),
        Value::Array(_) | Value::Object(_) => true,
    }
}

/// JSON text as `safe-stable-stringify` writes the value `JSON.parse`
/// gives: compact, object keys sorted by UTF-16 code units, only `"`, `\`
/// and control characters escaped, numbers as JavaScript prints them.
pub(crate) fn stable_stringify(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(&mut out, value);
    out
}

fn write_canonical(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => write_number(out, number(n)),
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(out, item);
            }
            out.push(']');
        }
        Value::Object(members) => {
            // JavaScript compares strings by UTF-16 code units, which orders
            // characters beyond U+FFFF before U+E000..U+FFFF, unlike UTF-8.
            let mut members: Vec<_> = members.iter().collect();
            members.sort_by(|(a, _), (b, _)| a.encode_utf16().cmp(b.encode_utf16()));
            out.push('{');
            for (i, (key, member)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(out, key);
                out.push(':');
                write_canonical(out, member);
            }
            out.push('}');
        }
    }
}

/// A JSON number as JavaScript holds it: the nearest `f64` (integers too).
pub(crate) fn number(n: &Number) -> f64 {
    match (n.as_u64(), n.as_i64()) {
        (Some(u), _) => u as f64,
        (None, Some(i)) => i as f64,
        (None, None) => n.as_f64().unwrap_or(f64::NAN),
    }
}

/// A string as `JSON.stringify` writes it: `"` and `\` escaped, the short
/// escapes for backspace, form feed, newline, carriage return and tab, other
/// control characters as `\u00xx`, everything else as is.
pub(crate) fn write_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c < ' ' => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A number as JavaScript's `Number.prototype.toString` writes it (ECMA-262
/// Number::toString): the shortest digits that round-trip, the closest of
/// those to the value and the even one of two equally close, laid out
/// positionally for decimal exponents from -6 to 20 and as `d.ddde±x`
/// otherwise; `null` for a non-finite number, as `JSON.stringify` writes it.
fn write_number(out: &mut String, x: f64) {
    if !x.is_finite() {
        out.push_str("null");
        return;
    }
    if x == 0.0 {
        out.push('0'); // -0 too
        return;
    }
    // Ryu picks the same digits as ECMAScript, exact ties included (Rust's
    // `{:e}` breaks a tie such as 1394865425023536.25 upwards, not to the
    // even digit). Its layout differs: read digits and exponent back from it.
    let mut buffer = ryu::Buffer::new();
    let ryu = buffer.format_finite(x.abs());
    let (mantissa, exponent) = ryu.split_once('e').unwrap_or((ryu, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0); // Ryu writes at most 3 digits
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let all = format!("{int}{frac}");
    let significant = all.trim_start_matches('0');
    let digits = significant.trim_end_matches('0');
    let leading_zeros = all.len() - significant.len();
    // The value is 0.DIGITS × 10^n, DIGITS having k digits (at most 17).
    let (k, n) = (digits.len() as i32, int.len() as i32 + exponent - leading_zeros as i32);
    let zeros = |count: i32| "0".repeat(count.max(0) as usize);
    if x.is_sign_negative() {
        out.push('-');
    }
    if k <= n && n <= 21 {
        out.push_str(digits);
        out.push_str(&zeros(n - k));
    } else if 0 < n && n <= 21 {
        let (int, frac) = digits.split_at(n as usize);
        out.push_str(int);
        out.push('.');
        out.push_str(frac);
    } else if -6 < n && n <= 0 {
        out.push_str("0.");
        out.push_str(&zeros(-n));
        out.push_str(digits);
    } else {
        let (first, rest) = digits.split_at(1);
        out.push_str(first);
        if !rest.is_empty() {
            out.push('.');
            out.push_str(rest);
        }
        out.push_str(&format!("e{}{}", if n > 0 { '+' } else { '-' }, (n - 1).abs()));
    }
}

/// A JSON number as JavaScript prints it after `JSON.parse`.
pub(crate) fn number_text(n: &Number) -> String {
    let mut out = String::new();
    write_number(&mut out, number(n));
    out
}
