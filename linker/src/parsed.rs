//! An input object parsed once and kept, with the mapping it borrows, for
//! the links that follow ([`crate::InputCache`]).

use std::borrow::Cow;
use std::sync::Arc;

use crate::error::Diags;
use crate::input::MappedInput;
use crate::parse::{parse_object, ObjFile};

/// A parsed object together with the input it borrows from.
pub(crate) struct Parsed {
    /// Borrows `input`'s bytes. Declared first, so dropped first; never
    /// handed out with its `'static` lifetime (see [`Parsed::obj`]).
    obj: ObjFile<'static>,
    /// [`hcr_image::content_hash`] of the bytes.
    pub(crate) hash: u64,
    input: Arc<MappedInput>,
}

impl Parsed {
    /// Parses `input` (an object file, not an archive) as module `name`;
    /// `None` when it has any problem (the link reports it by parsing again).
    pub(crate) fn parse(input: &Arc<MappedInput>, name: &str) -> Option<Parsed> {
        let bytes: &[u8] = input.bytes.as_slice();
        // SAFETY: the bytes belong to `input` (a mapping or a heap buffer,
        // neither of which moves when the `Arc` does), which this `Parsed`
        // keeps alive in its last field and drops after `obj`; `obj` is only
        // lent out for as long as `self` is borrowed (`Parsed::obj`).
        let data: &'static [u8] = unsafe { &*(bytes as *const [u8]) };
        let mut diags = Diags::default();
        let path = input.path.display().to_string();
        let obj = parse_object(&path, name, data, input.mtime_ns, &mut diags)?;
        diags.list.is_empty().then(|| Parsed {
            hash: hcr_image::content_hash(data),
            obj,
            input: Arc::clone(input),
        })
    }

    /// A copy of the object for one link, borrowing from `self`: its own
    /// sections (COMDAT changes their kinds), the symbols and relocations
    /// lent.
    pub(crate) fn lend(&self) -> ObjFile<'_> {
        let o = &self.obj;
        ObjFile {
            path: o.path.clone(),
            name: o.name.clone(),
            data: o.data,
            mtime_ns: o.mtime_ns,
            source: o.source.clone(),
            sections: Cow::Borrowed(&o.sections[..]),
            symbols: Cow::Borrowed(&o.symbols[..]),
            groups: Cow::Borrowed(&o.groups[..]),
            rels: Cow::Borrowed(&o.rels[..]),
            member: o.member,
        }
    }

    /// True when this was parsed from `input` (the same mapping).
    pub(crate) fn is_of(&self, input: &Arc<MappedInput>) -> bool {
        Arc::ptr_eq(&self.input, input)
    }
}
