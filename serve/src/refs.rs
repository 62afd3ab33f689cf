//! `{port:NAME}` and `{url:NAME}`: references to other projects, resolved, and the order to start them in.
