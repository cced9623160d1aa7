//! The action-module catalogue: input shape, field types and platform of every module, as
//! one table. Validation, JSON conversion and `iam`/docs output all read it, so adding a
//! module is one row plus its implementation in `actions`.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// `inputs:` is a single map.
    Map,
    /// `inputs:` is a list of maps, one operation each.
    List,
    /// `inputs:` is a comparison expression (Assert).
    Expression,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ty {
    Str,
    /// An octal permission string; an unquoted `0644` keeps its source text.
    Mode,
    StrList,
    Bool,
    Int,
    /// `[{name, value}]`, as ExecuteDocument's `parameters`.
    NameValues,
    Encoding,
    /// A hash algorithm name.
    Algorithm,
}

#[derive(Debug, Clone, Copy)]
pub struct Field {
    pub name: &'static str,
    pub ty: Ty,
    pub required: bool,
}

#[derive(Debug)]
pub struct ModuleSpec {
    pub name: &'static str,
    pub shape: Shape,
    pub windows_only: bool,
    pub fields: &'static [Field],
}

const fn req(name: &'static str, ty: Ty) -> Field {
    Field { name, ty, required: true }
}
const fn opt(name: &'static str, ty: Ty) -> Field {
    Field { name, ty, required: false }
}

use Shape::{List, Map};
use Ty::*;

pub static MODULES: &[ModuleSpec] = &[
    ModuleSpec { name: "Assert", shape: Shape::Expression, windows_only: false, fields: &[] },
    ModuleSpec { name: "ExecuteBash", shape: Map, windows_only: false, fields: &[req("commands", StrList)] },
    ModuleSpec {
        name: "ExecuteBinary",
        shape: Map,
        windows_only: false,
        fields: &[req("path", Str), opt("arguments", StrList)],
    },
    ModuleSpec {
        name: "ExecuteDocument",
        shape: Map,
        windows_only: false,
        fields: &[
            req("document", Str),
            opt("document-s3-bucket-owner", Str),
            opt("phases", Str),
            opt("parameters", NameValues),
        ],
    },
    ModuleSpec {
        name: "ExecutePowerShell",
        shape: Map,
        windows_only: true,
        fields: &[opt("commands", StrList), opt("file", Str)],
    },
    ModuleSpec {
        name: "S3Download",
        shape: List,
        windows_only: false,
        fields: &[req("source", Str), req("destination", Str), opt("expectedBucketOwner", Str), opt("overwrite", Bool)],
    },
    ModuleSpec {
        name: "S3Upload",
        shape: List,
        windows_only: false,
        fields: &[req("source", Str), req("destination", Str), opt("recurse", Bool), opt("expectedBucketOwner", Str)],
    },
    ModuleSpec {
        name: "WebDownload",
        shape: List,
        windows_only: false,
        fields: &[
            req("source", Str),
            req("destination", Str),
            opt("overwrite", Bool),
            opt("checksum", Str),
            opt("algorithm", Algorithm),
            opt("ignoreCertificateErrors", Bool),
        ],
    },
    ModuleSpec {
        name: "AppendFile",
        shape: List,
        windows_only: false,
        fields: &[req("path", Str), opt("content", Str), opt("encoding", Encoding)],
    },
    ModuleSpec {
        name: "CopyFile",
        shape: List,
        windows_only: false,
        fields: &[req("source", Str), req("destination", Str), opt("overwrite", Bool)],
    },
    ModuleSpec {
        name: "CopyFolder",
        shape: List,
        windows_only: false,
        fields: &[req("source", Str), req("destination", Str), opt("overwrite", Bool)],
    },
    ModuleSpec {
        name: "CreateFile",
        shape: List,
        windows_only: false,
        fields: &[
            req("path", Str),
            opt("content", Str),
            opt("encoding", Encoding),
            opt("owner", Str),
            opt("group", Str),
            opt("permissions", Mode),
            opt("overwrite", Bool),
        ],
    },
    ModuleSpec {
        name: "CreateFolder",
        shape: List,
        windows_only: false,
        fields: &[
            req("path", Str),
            opt("owner", Str),
            opt("group", Str),
            opt("permissions", Mode),
            opt("overwrite", Bool),
        ],
    },
    ModuleSpec {
        name: "CreateSymlink",
        shape: List,
        windows_only: false,
        fields: &[req("path", Str), req("target", Str), opt("force", Bool)],
    },
    ModuleSpec { name: "DeleteFile", shape: List, windows_only: false, fields: &[req("path", Str)] },
    ModuleSpec {
        name: "DeleteFolder",
        shape: List,
        windows_only: false,
        fields: &[req("path", Str), opt("force", Bool)],
    },
    ModuleSpec {
        name: "ListFiles",
        shape: List,
        windows_only: false,
        fields: &[req("path", Str), opt("fileNamePattern", Str), opt("recursive", Bool)],
    },
    ModuleSpec {
        name: "MoveFile",
        shape: List,
        windows_only: false,
        fields: &[req("source", Str), req("destination", Str), opt("overwrite", Bool)],
    },
    ModuleSpec {
        name: "MoveFolder",
        shape: List,
        windows_only: false,
        fields: &[req("source", Str), req("destination", Str), opt("overwrite", Bool)],
    },
    ModuleSpec {
        name: "ReadFile",
        shape: List,
        windows_only: false,
        fields: &[req("path", Str), opt("encoding", Encoding), opt("printFileContent", Bool)],
    },
    ModuleSpec {
        name: "SetFileEncoding",
        shape: List,
        windows_only: false,
        fields: &[req("path", Str), opt("encoding", Encoding)],
    },
    ModuleSpec {
        name: "SetFileOwner",
        shape: List,
        windows_only: false,
        fields: &[req("path", Str), req("owner", Str), opt("group", Str)],
    },
    ModuleSpec {
        name: "SetFolderOwner",
        shape: List,
        windows_only: false,
        fields: &[req("path", Str), req("owner", Str), opt("group", Str), opt("recursive", Bool)],
    },
    ModuleSpec {
        name: "SetFilePermissions",
        shape: List,
        windows_only: false,
        fields: &[req("path", Str), req("permissions", Mode)],
    },
    ModuleSpec {
        name: "SetFolderPermissions",
        shape: List,
        windows_only: false,
        fields: &[req("path", Str), req("permissions", Mode), opt("recursive", Bool)],
    },
    ModuleSpec { name: "Reboot", shape: Map, windows_only: false, fields: &[opt("delaySeconds", Int)] },
    ModuleSpec {
        name: "UpdateOS",
        shape: Map,
        windows_only: false,
        fields: &[opt("include", StrList), opt("exclude", StrList)],
    },
    ModuleSpec {
        name: "SetRegistry",
        shape: List,
        windows_only: true,
        fields: &[req("path", Str), req("name", Str), req("value", Str), req("type", Str)],
    },
    ModuleSpec { name: "InstallMSI", shape: Map, windows_only: true, fields: &[req("path", Str)] },
    ModuleSpec { name: "UninstallMSI", shape: Map, windows_only: true, fields: &[req("path", Str)] },
];

pub fn find(name: &str) -> Option<&'static ModuleSpec> {
    MODULES.iter().find(|m| m.name == name)
}

/// The names that differ from `name` only by case, for "did you mean" hints.
pub fn suggest(name: &str) -> Option<&'static str> {
    MODULES.iter().find(|m| m.name.eq_ignore_ascii_case(name)).map(|m| m.name)
}

pub const ENCODINGS: &[&str] = &[
    "utf8",
    "utf-8",
    "utf16",
    "utf-16",
    "utf16-le",
    "utf-16-le",
    "utf16-be",
    "utf-16-be",
    "utf32",
    "utf-32",
    "utf32-le",
    "utf-32-le",
    "utf32-be",
    "utf-32-be",
];

pub const ALGORITHMS: &[&str] = &["MD5", "SHA1", "SHA256", "SHA512"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogue_has_the_26_linux_modules_and_4_windows_ones() {
        assert_eq!(MODULES.iter().filter(|m| !m.windows_only).count(), 26);
        assert_eq!(MODULES.iter().filter(|m| m.windows_only).count(), 4);
    }
}
