//! Errors carry their causes as `source` chains, and the top level prints the chain
//! (`what failed: why: the OS's words`). A message that embeds another error, or a
//! warning that is not an error, renders the chain with [`chain`].

/// `error`, then each cause, joined by `: `.
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

#[cfg(test)]
mod tests {
    #[derive(Debug, thiserror::Error)]
    #[error("writing the report")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn the_chain_names_every_cause_once() {
        let e = Outer(std::io::Error::other("disk full"));
        assert_eq!(super::chain(&e), "writing the report: disk full");
    }
}
