//! The [`Generator`] interface every backend implements.

use crate::{Completion, LlmError, Request};

/// The outcome of one request of a batch, tagged with the request's id.
#[derive(Debug)]
pub struct BatchResult {
    pub id: String,
    pub result: Result<Completion, LlmError>,
}

/// Chat messages in, completions out.
///
/// `generate` answers one request; `generate_batch` takes many and calls `on_result` as each
/// finishes, in whatever order they finish, with at most the backend's concurrency in flight.
/// Every request gets exactly one result: an answer or an error, never silence.
pub trait Generator: Send + Sync {
    /// The model name results carry (part of the cache key).
    fn model(&self) -> String;

    fn generate(&self, req: &Request) -> Result<Completion, LlmError>;

    fn generate_batch(&self, reqs: Vec<Request>, on_result: &mut dyn FnMut(BatchResult)) {
        for r in reqs {
            let result = self.generate(&r);
            on_result(BatchResult { id: r.id, result });
        }
    }
}

/// Runs a batch and returns the results in request order (a convenience over
/// [`Generator::generate_batch`] for callers that want them all).
pub fn generate_all(g: &dyn Generator, reqs: Vec<Request>) -> Vec<Result<Completion, LlmError>> {
    let ids: Vec<String> = reqs.iter().map(|r| r.id.clone()).collect();
    let mut by_id: std::collections::HashMap<String, Result<Completion, LlmError>> =
        std::collections::HashMap::with_capacity(ids.len());
    g.generate_batch(reqs, &mut |r| {
        by_id.insert(r.id, r.result);
    });
    ids.iter()
        .map(|id| {
            by_id.remove(id).unwrap_or_else(|| {
                Err(LlmError::request(
                    id,
                    "no result (duplicate request id in the batch?)",
                ))
            })
        })
        .collect()
}

impl<G: Generator + ?Sized> Generator for std::sync::Arc<G> {
    fn model(&self) -> String {
        (**self).model()
    }
    fn generate(&self, req: &Request) -> Result<Completion, LlmError> {
        (**self).generate(req)
    }
    fn generate_batch(&self, reqs: Vec<Request>, on_result: &mut dyn FnMut(BatchResult)) {
        (**self).generate_batch(reqs, on_result)
    }
}

impl<G: Generator + ?Sized> Generator for Box<G> {
    fn model(&self) -> String {
        (**self).model()
    }
    fn generate(&self, req: &Request) -> Result<Completion, LlmError> {
        (**self).generate(req)
    }
    fn generate_batch(&self, reqs: Vec<Request>, on_result: &mut dyn FnMut(BatchResult)) {
        (**self).generate_batch(reqs, on_result)
    }
}
