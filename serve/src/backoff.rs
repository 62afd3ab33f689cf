//! Restart delays: exponential backoff with jitter, and when failures count as a crash loop.
