//! Reading an LLM's answer: `right`, or a JSON list of `{org, target}`,
//! tolerating code fences, a leading `json` tag and prose around the list.

use rediff_api::{ExpertVerdict, RevisePair};

/// Strips one Markdown code fence (```json ... ```), if the text has one.
fn strip_fence(text: &str) -> &str {
    let Some(start) = text.find("```") else {
        return text;
    };
    let after = &text[start + 3..];
    let body_start = after.find('\n').map_or(0, |i| i + 1);
    let tag = after[..body_start].trim();
    let body = if tag.is_empty() || tag.chars().all(|c| c.is_ascii_alphanumeric()) {
        &after[body_start..]
    } else {
        after
    };
    match body.find("```") {
        Some(end) => &body[..end],
        None => body,
    }
}

/// Parses a reply. `Err` carries a short description for the journal.
pub fn parse_reply(text: &str) -> Result<ExpertVerdict, String> {
    let body = strip_fence(text.trim()).trim();
    let body = match body.get(..4) {
        Some(tag) if tag.eq_ignore_ascii_case("json") => body[4..].trim(),
        _ => body,
    };
    let word = body
        .trim_matches(|c: char| c == '"' || c == '\'' || c == '.' || c == '`' || c.is_whitespace());
    if word.eq_ignore_ascii_case("right") {
        return Ok(ExpertVerdict::Right);
    }
    if let (Some(a), Some(b)) = (body.find('['), body.rfind(']')) {
        if a < b {
            let pairs: Vec<RevisePair> = serde_json::from_str(&body[a..=b])
                .map_err(|e| format!("the JSON list does not parse ({e}): {}", excerpt(text)))?;
            return Ok(if pairs.is_empty() {
                ExpertVerdict::Right
            } else {
                ExpertVerdict::Revisions(pairs)
            });
        }
    }
    Err(format!(
        "neither `right` nor a JSON list: {}",
        excerpt(text)
    ))
}

/// The first 200 characters, for messages.
pub fn excerpt(text: &str) -> String {
    let t: String = text.chars().take(200).collect();
    if t.len() < text.len() {
        format!("{t}...")
    } else {
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(v: ExpertVerdict) -> Vec<(String, String)> {
        match v {
            ExpertVerdict::Revisions(p) => p.into_iter().map(|p| (p.org, p.target)).collect(),
            ExpertVerdict::Right => vec![],
        }
    }

    #[test]
    fn reads_right_lists_fences_tags_and_prose() {
        for r in [
            "right",
            "Right.",
            "\"right\"",
            "```\nright\n```",
            " RIGHT \n",
        ] {
            assert_eq!(parse_reply(r).unwrap(), ExpertVerdict::Right, "{r}");
        }
        let list = r#"[{"org": "red", "target": "blue"}]"#;
        let want = vec![("red".to_string(), "blue".to_string())];
        for r in [
            list.to_string(),
            format!("```json\n{list}\n```"),
            format!("json {list}"),
            format!("Here are the corrections:\n{list}\nHope this helps."),
            format!("```\n{list}\n```"),
        ] {
            assert_eq!(pairs(parse_reply(&r).unwrap()), want, "{r}");
        }
        assert_eq!(parse_reply("[]").unwrap(), ExpertVerdict::Right);
    }

    #[test]
    fn malformed_replies_are_errors_with_an_excerpt() {
        let e = parse_reply("I think the caption is mostly fine").unwrap_err();
        assert!(e.contains("neither"), "{e}");
        let e = parse_reply("[{\"org\": \"red\"}]").unwrap_err();
        assert!(e.contains("does not parse"), "{e}");
    }
}
