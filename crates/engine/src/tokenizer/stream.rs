//! Incremental detokenization that never splits a UTF-8 character: text is released only once
//! the bytes decoded so far form whole characters (the `prefix_offset`/`read_offset` scheme of
//! text-generation-inference and candle's `TokenOutputStream`).

use super::Tokenizer;
use crate::error::Result;

#[derive(Debug, Default)]
pub struct TokenStream {
    tokens: Vec<u32>,
    prefix_offset: usize,
    read_offset: usize,
}

impl TokenStream {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a token; returns the text it completes, if any.
    pub fn push(&mut self, tokenizer: &Tokenizer, id: u32) -> Result<Option<String>> {
        self.tokens.push(id);
        let prefix = tokenizer.decode(&self.tokens[self.prefix_offset..self.read_offset])?;
        let full = tokenizer.decode(&self.tokens[self.prefix_offset..])?;
        if full.len() > prefix.len() && !full.ends_with('\u{FFFD}') && full.is_char_boundary(prefix.len()) {
            let text = full[prefix.len()..].to_string();
            self.prefix_offset = self.read_offset;
            self.read_offset = self.tokens.len();
            Ok(Some(text))
        } else {
            Ok(None)
        }
    }

    /// Text held back at the end (an incomplete character), decoded as is.
    pub fn flush(&mut self, tokenizer: &Tokenizer) -> Result<Option<String>> {
        let prefix = tokenizer.decode(&self.tokens[self.prefix_offset..self.read_offset])?;
        let full = tokenizer.decode(&self.tokens[self.prefix_offset..])?;
        self.prefix_offset = self.tokens.len();
        self.read_offset = self.tokens.len();
        if full.len() > prefix.len() && full.is_char_boundary(prefix.len()) {
            Ok(Some(full[prefix.len()..].to_string()))
        } else {
            Ok(None)
        }
    }

    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }
}
