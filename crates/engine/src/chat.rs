//! Bringing an attention state up to a rendered conversation while feeding only what is new.
//!
//! A chat state must hold exactly the tokens that encoding the whole rendered conversation from
//! scratch would give. Special tokens (`<|im_start|>`, `<|eot_id|>`, …) are split out before the
//! BPE pre-tokenizer runs, so no token ever spans one: the encoding of a text is the encoding of
//! the part up to a special token followed by the encoding of the rest. [`sync`] therefore only
//! re-encodes the text after the state's last special token (normally: the assistant's latest
//! reply plus the new turn), compares it with the state's tail (a generated reply may be a
//! non-canonical tokenization), and returns how many state tokens to keep and which to append.

use crate::error::Result;
use crate::tokenizer::Tokenizer;

/// What to do to a state so it holds the encoding of a target text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncPlan {
    /// Tokens of the state to keep (rewind to this length).
    pub keep: usize,
    /// Tokens to feed after that.
    pub append: Vec<u32>,
    /// Tokens that were encoded to make the plan (for the "only the new turn" guarantee).
    pub encoded: usize,
}

fn lcp(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

fn is_special(tokenizer: &Tokenizer, id: u32) -> bool {
    let added = tokenizer.inner().get_added_vocabulary();
    match tokenizer.token_text(id) {
        Some(t) => added.is_special_token(&t) || added.get_vocab().contains_key(&t),
        None => false,
    }
}

/// Plans how to bring `state` (token ids) to `target` (a text whose from-scratch encoding is wanted).
pub fn sync(tokenizer: &Tokenizer, state: &[u32], target: &str) -> Result<SyncPlan> {
    // Walk back over the state's special tokens until one whose prefix text matches the target.
    let mut idx = state.len();
    while let Some(s) = state[..idx].iter().rposition(|&t| is_special(tokenizer, t)) {
        let prefix = tokenizer.decode_with_special(&state[..=s])?;
        if let Some(rest) = target.strip_prefix(prefix.as_str()) {
            let tail = tokenizer.encode(rest)?;
            let common = lcp(&state[s + 1..], &tail);
            return Ok(SyncPlan {
                keep: s + 1 + common,
                append: tail[common..].to_vec(),
                encoded: tail.len(),
            });
        }
        idx = s;
    }
    let all = tokenizer.encode(target)?;
    let common = lcp(state, &all);
    Ok(SyncPlan {
        keep: common,
        append: all[common..].to_vec(),
        encoded: all.len(),
    })
}
