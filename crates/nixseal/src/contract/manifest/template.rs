//! Templates: text with `{{nixseal:NAME}}` placeholders, split once into
//! literal text and the secrets it names.

use super::{PLACEHOLDER_CLOSE, PLACEHOLDER_OPEN};

/// A `{{nixseal:` without its closing `}}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("`{{{{nixseal:` without a closing `}}}}`")]
pub struct Unterminated;

/// The secret names a template references, in order of appearance.
pub fn placeholders(content: &str) -> Result<Vec<&str>, Unterminated> {
    Ok(pieces(content)?
        .into_iter()
        .filter_map(|p| match p {
            Piece::Placeholder(name) => Some(name),
            Piece::Text(_) => None,
        })
        .collect())
}

/// A piece of a template's text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Piece<'t> {
    /// Literal text.
    Text(&'t str),
    /// `{{nixseal:NAME}}`: the content of the secret NAME.
    Placeholder(&'t str),
}

/// Splits a template's text into literal text and placeholders, in order.
pub fn pieces(content: &str) -> Result<Vec<Piece<'_>>, Unterminated> {
    let mut out = Vec::new();
    let mut rest = content;
    while let Some(i) = rest.find(PLACEHOLDER_OPEN) {
        let after = &rest[i + PLACEHOLDER_OPEN.len()..];
        let end = after.find(PLACEHOLDER_CLOSE).ok_or(Unterminated)?;
        if i > 0 {
            out.push(Piece::Text(&rest[..i]));
        }
        out.push(Piece::Placeholder(&after[..end]));
        rest = &after[end + PLACEHOLDER_CLOSE.len()..];
    }
    if !rest.is_empty() {
        out.push(Piece::Text(rest));
    }
    Ok(out)
}
