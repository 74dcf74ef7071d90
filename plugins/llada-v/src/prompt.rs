//! The prompt exactly as the reference builds it: the `llava_llada`
//! conversation (system prompt, then the user's `<image>\n{question}`)
//! rendered with the tokenizer's own chat template (`tokenizer_config.json`,
//! as `apply_chat_template` does), then `tokenizer_image_token`: each piece
//! between `<image>` tags tokenized on its own, with special tokens, and
//! the reference's BOS rule.

use std::path::Path;

use minijinja::{context, Environment, ErrorKind};
use rediff_api::tokens::TextTokenizer;
use rediff_api::{Error, Result};
use serde_json::Value;

/// The system prompt of the reference's `llava_llada` conversation template.
pub const DEFAULT_SYSTEM_PROMPT: &str = "You are a helpful language and vision assistant. \
You are able to understand the visual content that the user provides, \
and assist the user with a variety of tasks using natural language.";

/// The image tag in the prompt text.
pub const IMAGE_TAG: &str = "<image>";

/// Stands for the image in prompt ids (the reference uses -200); the
/// backend splices the image features there.
pub const IMAGE_PLACEHOLDER: u32 = u32::MAX;

/// LLaDA-8B-Instruct's chat template (Llama-3 headers; only the content is
/// trimmed), used when a checkpoint's `tokenizer_config.json` has none.
pub const LLADA_CHAT_TEMPLATE: &str = "{% set loop_messages = messages %}\
{% for message in loop_messages %}\
{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'\
+ message['content'] | trim + '<|eot_id|>' %}\
{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}\
{{ content }}{% endfor %}\
{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}";

/// The chat template and the special-token strings it may use, from a
/// checkpoint's `tokenizer_config.json`.
#[derive(Debug, Clone)]
pub struct ChatTemplate {
    source: String,
    bos_token: String,
    eos_token: String,
    pad_token: String,
    unk_token: String,
}

impl Default for ChatTemplate {
    fn default() -> Self {
        Self {
            source: LLADA_CHAT_TEMPLATE.into(),
            bos_token: "<|startoftext|>".into(),
            eos_token: "<|eot_id|>".into(),
            pad_token: String::new(),
            unk_token: String::new(),
        }
    }
}

/// A special token as `tokenizer_config.json` stores it: a string or an
/// `AddedToken` object with a `content`.
fn token_string(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("content")?.as_str().map(str::to_string),
        _ => None,
    }
}

impl ChatTemplate {
    /// Reads `tokenizer_config.json` in `dir` (the built-in LLaDA template
    /// and tokens where it is absent or lacks them).
    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join("tokenizer_config.json");
        let mut t = Self::default();
        if !path.exists() {
            return Ok(t);
        }
        let text = std::fs::read_to_string(&path)
            .map_err(|e| Error::checkpoint(&path, format!("cannot read: {e}")))?;
        let cfg: Value = serde_json::from_str(&text)
            .map_err(|e| Error::checkpoint(&path, format!("not JSON: {e}")))?;
        match cfg.get("chat_template") {
            Some(Value::String(s)) => t.source = s.clone(),
            // A list of named templates: the one named "default".
            Some(Value::Array(list)) => {
                if let Some(s) = list
                    .iter()
                    .find(|e| e.get("name").and_then(Value::as_str) == Some("default"))
                    .and_then(|e| e.get("template")?.as_str())
                {
                    t.source = s.to_string();
                }
            }
            _ => {}
        }
        for (key, slot) in [
            ("bos_token", &mut t.bos_token),
            ("eos_token", &mut t.eos_token),
            ("pad_token", &mut t.pad_token),
            ("unk_token", &mut t.unk_token),
        ] {
            if let Some(s) = token_string(cfg.get(key)) {
                *slot = s;
            }
        }
        // Fail on a template that does not parse now, not at the first caption.
        t.render("", "", true)
            .map_err(|e| Error::checkpoint(&path, format!("chat_template: {e}")))?;
        Ok(t)
    }

    /// The BOS token string (`bos_token`).
    pub fn bos_token(&self) -> &str {
        &self.bos_token
    }

    /// The prompt text: the system message, the user's message and the
    /// generation prompt, rendered as transformers' `apply_chat_template`
    /// does (Jinja with `trim_blocks` and `lstrip_blocks`).
    pub fn render(&self, system: &str, user: &str, add_generation_prompt: bool) -> Result<String> {
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        minijinja_contrib::add_to_environment(&mut env);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function(
            "raise_exception",
            |msg: String| -> std::result::Result<String, minijinja::Error> {
                Err(minijinja::Error::new(ErrorKind::InvalidOperation, msg))
            },
        );
        let template = env
            .template_from_str(&self.source)
            .map_err(|e| Error::invalid(format!("chat template: {e}")))?;
        template
            .render(context! {
                messages => vec![
                    context! { role => "system", content => system },
                    context! { role => "user", content => user },
                ],
                add_generation_prompt => add_generation_prompt,
                bos_token => &self.bos_token,
                eos_token => &self.eos_token,
                pad_token => &self.pad_token,
                unk_token => &self.unk_token,
            })
            .map_err(|e| Error::invalid(format!("chat template: {e}")))
    }

    /// The prompt text for `question` about an image (`<image>\n` in front,
    /// as the reference's caption scripts write it) or, with `image` false,
    /// a text-only question.
    pub fn prompt(&self, system: &str, question: &str, image: bool) -> Result<String> {
        let user = if image {
            format!("{IMAGE_TAG}\n{question}")
        } else {
            question.to_string()
        };
        self.render(system, &user, true)
    }
}

/// Tokenizes `prompt` as the reference's `tokenizer_image_token` does: each
/// piece between `<image>` tags is encoded on its own *with* the
/// tokenizer's special tokens (its post-processor), the tags become
/// [`IMAGE_PLACEHOLDER`]; when the first piece starts with `bos`, that BOS
/// is kept once and the first token of every piece is dropped (the
/// reference assumes each piece carries its own BOS, so with LLaDA's
/// tokenizer it drops the real token after the image, usually the "\n").
pub fn tokenize_with_image(tokenizer: &TextTokenizer, prompt: &str, bos: u32) -> Result<Vec<u32>> {
    let pieces = prompt
        .split(IMAGE_TAG)
        .map(|p| tokenizer.encode_with_special_tokens(p))
        .collect::<Result<Vec<_>>>()?;
    let offset = usize::from(pieces[0].first() == Some(&bos));
    let mut ids = Vec::new();
    if offset == 1 {
        ids.push(bos);
    }
    for (i, piece) in pieces.iter().enumerate() {
        if i > 0 {
            // The separator is `[IMAGE] * (offset + 1)` and loses `offset` of its head too.
            ids.push(IMAGE_PLACEHOLDER);
        }
        ids.extend(piece.iter().skip(offset));
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::tiny_tokenizer;

    #[test]
    fn the_llada_template_matches_the_reference_string() {
        // The template trims the content ("<image>\n" + question), so only
        // the question's trailing space goes.
        let t = ChatTemplate::default();
        assert_eq!(
            t.prompt(" SYS\n", " describe the image . ", true).unwrap(),
            "<|startoftext|><|start_header_id|>system<|end_header_id|>\n\nSYS<|eot_id|>\
<|start_header_id|>user<|end_header_id|>\n\n<image>\n describe the image .<|eot_id|>\
<|start_header_id|>assistant<|end_header_id|>\n\n"
        );
        assert_eq!(
            t.prompt("", "hi", false).unwrap(),
            "<|startoftext|><|start_header_id|>system<|end_header_id|>\n\n<|eot_id|>\
<|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>\
<|start_header_id|>assistant<|end_header_id|>\n\n"
        );
    }

    #[test]
    fn templates_come_from_tokenizer_config_with_python_methods() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = serde_json::json!({
            "bos_token": {"content": "<s>", "special": true},
            "chat_template": "{{ bos_token }}{% for m in messages %}[{{ m['role'].upper() }}] \
        {{ m['content'].strip() }}\n{% endfor %}{% if add_generation_prompt %}>{% endif %}"
        });
        std::fs::write(dir.path().join("tokenizer_config.json"), cfg.to_string()).unwrap();
        let t = ChatTemplate::load(dir.path()).unwrap();
        assert_eq!(t.bos_token(), "<s>");
        assert_eq!(
            t.prompt("S ", "q", true).unwrap(),
            "<s>[SYSTEM] S\n[USER] <image>\nq\n>"
        );
        std::fs::write(
            dir.path().join("tokenizer_config.json"),
            r#"{"chat_template": "{% for %}"}"#,
        )
        .unwrap();
        let err = ChatTemplate::load(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("tokenizer_config.json") && err.contains("chat_template"),
            "{err}"
        );
    }

    #[test]
    fn image_splicing_reproduces_the_dropped_token() {
        let tk = tiny_tokenizer().unwrap();
        let id = |t: &str| tk.token_to_id(t).unwrap();
        let bos = id("<|startoftext|>");
        let text = ChatTemplate::default()
            .prompt("SYS", "describe the image .", true)
            .unwrap();
        let ids = tokenize_with_image(&tk, &text, bos).unwrap();
        let (sh, eh, eot, nl) = (
            id("<|start_header_id|>"),
            id("<|end_header_id|>"),
            id("<|eot_id|>"),
            id("\n"),
        );
        let w = |s: &str| tk.encode(s).unwrap();
        let mut expected = vec![bos, sh];
        expected.extend(w("system"));
        expected.extend([eh, nl, nl]);
        expected.extend(w("SYS"));
        expected.extend([eot, sh]);
        expected.extend(w("user"));
        expected.extend([eh, nl, nl, IMAGE_PLACEHOLDER]);
        // The "\n" after <image> is dropped, as in the reference.
        expected.extend(w("describe the image ."));
        expected.extend([eot, sh]);
        expected.extend(w("assistant"));
        expected.extend([eh, nl, nl]);
        assert_eq!(ids, expected);
        // Without a leading BOS nothing is dropped; without a tag it is one piece.
        let ids = tokenize_with_image(&tk, "a <image>\nb", bos).unwrap();
        assert_eq!(ids, [w("a"), vec![IMAGE_PLACEHOLDER, nl], w("b")].concat());
        assert_eq!(tokenize_with_image(&tk, "a b", bos).unwrap(), w("a b"));
    }
}
