//! How each operation is reached over HTTP, declared beside it in the table of operations
//! (`request.rs`). Plain data: the function URL routes on it, and the README's HTTP table is
//! checked against it.

/// An operation's HTTP route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub method: &'static str,
    /// Segments are literal, or `{field}`: that argument, taken from the segment.
    pub path: &'static str,
    /// Where the other arguments come from.
    pub input: Input,
    pub reply: Reply,
}

/// Where a route's arguments come from, besides its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// Nowhere; a body is ignored.
    None,
    /// The JSON body is this argument.
    Body(&'static str),
    /// The JSON body's fields are the arguments.
    WholeBody,
    /// The query parameters are the arguments.
    Query,
}

/// How a route turns the operation's result into a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// 200 with the result; a `null` result is 404 with this message.
    Found(&'static str),
    /// 200 with the result as it is.
    Ok,
    /// 201 with `{"id": result}`.
    CreatedId,
    /// 201, no body.
    Created,
    /// 204, no body.
    NoContent,
    /// 200 with `{"valid": result}`.
    Valid,
}
