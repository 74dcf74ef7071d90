//! The LLaDA-V chat prompt (Llama-3 style headers) and the reference's
//! image-token splicing rule, so prompt ids match the ones the checkpoint
//! was trained on.

use rediff_core::tokens::TextTokenizer;
use rediff_core::{Error, Result};

/// The system prompt of LLaDA-V's `llava_llada` conversation template.
pub const DEFAULT_SYSTEM_PROMPT: &str = "You are a helpful language and vision assistant. \
You are able to understand the visual content that the user provides, \
and assist the user with a variety of tasks using natural language.";

/// The image placeholder in the prompt text.
pub const IMAGE_TAG: &str = "<image>";

/// Stands for the image in prompt ids (the reference uses -200); the
/// backend splices the image features there.
pub const IMAGE_PLACEHOLDER: u32 = u32::MAX;

/// The prompt text for `question` (the template trims each message).
pub fn chat_prompt(system: &str, question: &str) -> String {
    format!(
        "<|startoftext|><|start_header_id|>system<|end_header_id|>\n\n{}<|eot_id|>\
<|start_header_id|>user<|end_header_id|>\n\n{}<|eot_id|>\
<|start_header_id|>assistant<|end_header_id|>\n\n",
        system.trim(),
        format!("{IMAGE_TAG}\n{question}").trim()
    )
}

/// Tokenizes `prompt` the way the reference's `tokenizer_image_token` does:
/// each piece between `<image>` tags is encoded on its own and the tags
/// become [`IMAGE_PLACEHOLDER`]; when the first piece starts with `bos`,
/// the first token of every later piece is dropped (the reference assumes
/// each piece carries its own BOS, so with LLaDA's tokenizer it drops the
/// real token after the image, usually the "\n").
pub fn tokenize_with_image(tokenizer: &TextTokenizer, prompt: &str, bos: u32) -> Result<Vec<u32>> {
    let pieces = prompt
        .split(IMAGE_TAG)
        .map(|p| tokenizer.encode(p))
        .collect::<Result<Vec<_>>>()?;
    if pieces.len() < 2 {
        return Err(Error::invalid(format!("the prompt has no {IMAGE_TAG} tag")));
    }
    let offset = usize::from(pieces[0].first() == Some(&bos));
    let mut ids = Vec::new();
    if offset == 1 {
        ids.push(bos);
    }
    for (i, piece) in pieces.iter().enumerate() {
        if i > 0 {
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
    fn template_matches_the_reference_string() {
        // The template trims the whole message ("<image>\n" + question), so
        // only the question's trailing space goes.
        assert_eq!(
            chat_prompt(" SYS\n", " describe the image . "),
            "<|startoftext|><|start_header_id|>system<|end_header_id|>\n\nSYS<|eot_id|>\
<|start_header_id|>user<|end_header_id|>\n\n<image>\n describe the image .<|eot_id|>\
<|start_header_id|>assistant<|end_header_id|>\n\n"
        );
    }

    #[test]
    fn image_splicing_reproduces_the_dropped_token() {
        let tk = tiny_tokenizer().unwrap();
        let id = |t: &str| tk.token_to_id(t).unwrap();
        let bos = id("<|startoftext|>");
        let ids =
            tokenize_with_image(&tk, &chat_prompt("SYS", "describe the image ."), bos).unwrap();
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
        // Without a leading BOS nothing is dropped.
        let ids = tokenize_with_image(&tk, "a <image>\nb", bos).unwrap();
        assert_eq!(ids, [w("a"), vec![IMAGE_PLACEHOLDER, nl], w("b")].concat());
        assert!(tokenize_with_image(&tk, "no image", bos).is_err());
    }
}
