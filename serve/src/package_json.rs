//! Reading one script of a `package.json`.
