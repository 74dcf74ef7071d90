//! Reading the judge's replies. Each step asks for one JSON value; a reply
//! may wrap it in prose or a code fence (many local models do), so the
//! first JSON value of the expected kind is read and the rest ignored. A
//! reply without one, or with one of the wrong shape, is malformed: the
//! step is asked again, then recorded as a failure (never scored).

use serde_json::Value;

/// The first JSON value opening with `open` (`{` or `[`) in `reply`.
pub fn first_json(reply: &str, open: char) -> Result<Value, String> {
    let mut rest = reply;
    while let Some(i) = rest.find(open) {
        let candidate = &rest[i..];
        let mut values = serde_json::Deserializer::from_str(candidate).into_iter::<Value>();
        if let Some(Ok(v)) = values.next() {
            return Ok(v);
        }
        rest = &candidate[open.len_utf8()..];
    }
    let what = if open == '{' { "object" } else { "list" };
    Err(format!("no JSON {what} in the reply: {}", excerpt(reply)))
}

/// The first 160 characters of `text`, on one line.
pub fn excerpt(text: &str) -> String {
    let one_line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let t = one_line.trim();
    match t.char_indices().nth(160) {
        Some((i, _)) => format!("`{}...`", &t[..i]),
        None => format!("`{t}`"),
    }
}

/// CLAIR's reply: `{"score": 0-100, "reason": "..."}`.
pub fn clair(reply: &str) -> Result<(f64, String), String> {
    let v = first_json(reply, '{')?;
    let score = match v.get("score") {
        Some(Value::Number(n)) => n.as_f64().unwrap_or(f64::NAN),
        Some(Value::String(s)) => s
            .trim()
            .parse::<f64>()
            .map_err(|_| format!("`score` is not a number: {}", excerpt(s)))?,
        _ => return Err(format!("no numeric `score` in {}", excerpt(&v.to_string()))),
    };
    if !(0.0..=100.0).contains(&score) {
        return Err(format!("`score` {score} is outside 0..=100"));
    }
    let reason = v
        .get("reason")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    Ok((score, reason))
}

/// A list of non-empty strings (the caption's atomic propositions).
pub fn strings(reply: &str) -> Result<Vec<String>, String> {
    let v = first_json(reply, '[')?;
    let list = v.as_array().expect("opened with [");
    list.iter()
        .map(|x| match x.as_str().map(str::trim) {
            Some(s) if !s.is_empty() => Ok(s.to_string()),
            _ => Err(format!(
                "not a non-empty string: {}",
                excerpt(&x.to_string())
            )),
        })
        .collect()
}

/// `n` verdicts: `true`/`false` (or the strings "true"/"false", any case).
pub fn verdicts(reply: &str, n: usize) -> Result<Vec<bool>, String> {
    let v = first_json(reply, '[')?;
    let list = v.as_array().expect("opened with [");
    if list.len() != n {
        return Err(format!("{} verdicts for {n} propositions", list.len()));
    }
    list.iter()
        .map(|x| match x {
            Value::Bool(b) => Ok(*b),
            Value::String(s) if s.trim().eq_ignore_ascii_case("true") => Ok(true),
            Value::String(s) if s.trim().eq_ignore_ascii_case("false") => Ok(false),
            other => Err(format!(
                "not true or false: {}",
                excerpt(&other.to_string())
            )),
        })
        .collect()
}

/// One multiple-choice question about an image.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Question {
    /// The question.
    pub question: String,
    /// Four options, read as A-D.
    pub options: Vec<String>,
    /// The right option's letter, `A`-`D`.
    pub answer: String,
}

impl Question {
    /// Checks the shape: a question, four options, an answer A-D.
    pub fn check(&self) -> Result<(), String> {
        if self.question.trim().is_empty() {
            return Err("a question is empty".into());
        }
        if self.options.len() != 4 || self.options.iter().any(|o| o.trim().is_empty()) {
            return Err(format!(
                "question `{}` needs four non-empty options",
                self.question
            ));
        }
        if letter(&self.answer).is_none_or(|l| l > 3) {
            return Err(format!(
                "question `{}` has answer `{}`, not A-D",
                self.question, self.answer
            ));
        }
        Ok(())
    }
}

/// `A`-`E` (any case, a trailing `)` or `.` allowed) as 0-4.
pub fn letter(s: &str) -> Option<usize> {
    let t = s.trim().trim_end_matches([')', '.']).trim();
    let mut chars = t.chars();
    let c = chars.next()?.to_ascii_uppercase();
    if chars.next().is_some() {
        return None;
    }
    ('A'..='E').position(|l| l == c)
}

/// The questions the judge wrote: a list of [`Question`]s, at least one.
pub fn questions(reply: &str) -> Result<Vec<Question>, String> {
    let v = first_json(reply, '[')?;
    let qs: Vec<Question> = serde_json::from_value(v)
        .map_err(|e| format!("not a list of {{question, options, answer}}: {e}"))?;
    if qs.is_empty() {
        return Err("no questions".into());
    }
    for q in &qs {
        q.check()?;
    }
    Ok(qs)
}

/// `n` answers, each a letter A-E (E: "I don't know"), as 0-4.
pub fn answers(reply: &str, n: usize) -> Result<Vec<usize>, String> {
    let v = first_json(reply, '[')?;
    let list = v.as_array().expect("opened with [");
    if list.len() != n {
        return Err(format!("{} answers for {n} questions", list.len()));
    }
    list.iter()
        .map(|x| {
            x.as_str()
                .and_then(letter)
                .ok_or_else(|| format!("not a letter A-E: {}", excerpt(&x.to_string())))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_found_inside_prose_and_fences() {
        let r = "Sure! ```json\n{\"score\": 85, \"reason\": \"same dog\"}\n``` hope it helps {x}";
        assert_eq!(clair(r).unwrap(), (85.0, "same dog".to_string()));
        // A brace in prose before the object is skipped.
        assert_eq!(
            clair("a {b} c {\"score\": \"40\"}").unwrap(),
            (40.0, String::new())
        );
        assert!(clair("85").unwrap_err().contains("no JSON object"));
        assert!(clair("{\"score\": 140}").unwrap_err().contains("outside"));
        assert!(clair("{\"reason\": \"x\"}")
            .unwrap_err()
            .contains("no numeric"));
    }

    #[test]
    fn lists_are_checked_for_length_and_kind() {
        assert_eq!(
            strings("[\"A dog runs.\", \" It is brown. \"]").unwrap(),
            ["A dog runs.", "It is brown."]
        );
        assert!(strings("[\"\"]").is_err());
        assert_eq!(
            verdicts("[true, \"False\", \"TRUE\"]", 3).unwrap(),
            [true, false, true]
        );
        assert!(verdicts("[true]", 2)
            .unwrap_err()
            .contains("1 verdicts for 2"));
        assert!(verdicts("[1]", 1).is_err());
        assert_eq!(answers("[\"a\", \"B)\", \"e\"]", 3).unwrap(), [0, 1, 4]);
        assert!(answers("[\"F\"]", 1).is_err());
        assert!(answers("[\"AB\"]", 1).is_err());
    }

    #[test]
    fn questions_need_four_options_and_an_answer() {
        let ok = r#"[{"question": "Colour?", "options": ["red", "blue", "green", "grey"], "answer": "B"}]"#;
        assert_eq!(questions(ok).unwrap()[0].answer, "B");
        let three =
            r#"[{"question": "Colour?", "options": ["red", "blue", "green"], "answer": "B"}]"#;
        assert!(questions(three).unwrap_err().contains("four"));
        let e = r#"[{"question": "Colour?", "options": ["a", "b", "c", "d"], "answer": "E"}]"#;
        assert!(questions(e).unwrap_err().contains("not A-D"));
        assert!(questions("[]").is_err());
    }
}
