//! simserve: similarity between embeddings over HTTP.
pub mod compute;
pub mod tensor;
