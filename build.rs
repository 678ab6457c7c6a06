//! Compiles the BPF C under `src/kernel/bpf/` and generates the libbpf-rs
//! skeleton (and the boundary types) into OUT_DIR.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

use libbpf_cargo::SkeletonBuilder;

#[allow(dead_code)]
#[path = "src/features/btf_types.rs"]
mod btf_types;

/// Where the vendored vmlinux.h lives (one per target arch).
const VMLINUX_DIR: &str = "src/kernel/bpf/vmlinux";
/// Each BPF object: (its folder, next to the Rust that loads it; its name).
const OBJECTS: [(&str, &str); 2] = [("src/kernel/bpf", "reflex"), ("src/features/bpf", "probe")];
/// The benchmarks' own (`--features bench`): the seed's program, a baseline,
/// and an exit-time recorder.
const BENCH_OBJECTS: [(&str, &str); 2] = [
    ("benches/suite/bpf", "seed"),
    ("benches/suite/bpf", "clock"),
];
/// Oldest clang that compiles our BPF C with the CO-RE features we use.
const MIN_CLANG: u32 = 14;

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let arch = env::var("CARGO_CFG_TARGET_ARCH").expect("cargo sets CARGO_CFG_TARGET_ARCH");
    let vmlinux = Path::new(VMLINUX_DIR).join(&arch);
    if !vmlinux.join("vmlinux.h").exists() {
        panic!(
            "no vendored vmlinux.h for target arch '{arch}' at {}: generate one with \
             `bpftool btf dump file /sys/kernel/btf/vmlinux format c > {}/vmlinux.h` \
             on a {arch} machine and commit it",
            vmlinux.display(),
            vmlinux.display()
        );
    }
    let clang = find_clang();

    println!("cargo:rerun-if-env-changed=REFLEX_CLANG");
    // What `--version` names: the commit, and the profile.
    let commit = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .or_else(|| env::var("REFLEX_COMMIT").ok())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=REFLEX_COMMIT={commit}");
    println!(
        "cargo:rustc-env=REFLEX_PROFILE={}",
        env::var("PROFILE").unwrap_or_default()
    );
    println!("cargo:rerun-if-env-changed=REFLEX_COMMIT");
    // Written at every commit and checkout.
    if Path::new(".git/logs/HEAD").exists() {
        println!("cargo:rerun-if-changed=.git/logs/HEAD");
    }
    let bench = env::var_os("CARGO_FEATURE_BENCH").is_some();
    let objects: Vec<(&str, &str)> = OBJECTS
        .into_iter()
        .chain(BENCH_OBJECTS.into_iter().filter(|_| bench))
        .collect();
    let mut dirs: Vec<&str> = objects.iter().map(|(d, _)| *d).collect();
    dirs.dedup();
    for dir in dirs {
        for entry in std::fs::read_dir(dir).expect("BPF folder exists") {
            let path = entry.expect("readable dir entry").path();
            if path.extension().is_some_and(|e| e == "c" || e == "h") {
                println!("cargo:rerun-if-changed={}", path.display());
            }
        }
    }

    for (dir, name) in objects {
        let src = Path::new(dir).join(format!("{name}.bpf.c"));
        let obj = out.join(format!("{name}.bpf.o"));
        SkeletonBuilder::new()
            .source(&src)
            .obj(&obj)
            .clang(&clang)
            .clang_args([
                "-Wall".into(),
                "-Werror".into(),
                // Pinned ISA: v3 (ALU32, JMP32) loads on every kernel we support (>= 5.10).
                "-mcpu=v3".into(),
                format!("-I{dir}"),
                format!("-I{}", vmlinux.display()),
            ])
            .build_and_generate(out.join(format!("{name}.skel.rs")))
            .unwrap_or_else(|e| panic!("building {}: {e:#}", src.display()));
        if name == "reflex" {
            let roots = core_roots(&std::fs::read(&obj).expect("the object just built"))
                .unwrap_or_else(|e| panic!("reading {}'s CO-RE relocations: {e}", obj.display()));
            std::fs::write(out.join("core_roots.rs"), roots).expect("writing core_roots.rs");
        }
    }
}

/// The types the object's CO-RE relocations are relative to (their root
/// types, by name) and which kinds of relocation it has, as Rust: what
/// `Features::core_btf` keeps of the kernel's BTF for libbpf.
fn core_roots(elf: &[u8]) -> Result<String, String> {
    use btf_types::{Types, u32_at};
    let section = |want: &str| -> Result<&[u8], String> {
        let u64_at = |at: usize| {
            elf.get(at..at + 8)
                .map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap_or_default()))
                as usize
        };
        let u16_at = |at: usize| {
            elf.get(at..at + 2)
                .map_or(0, |b| u16::from_le_bytes([b[0], b[1]])) as usize
        };
        let (shoff, shentsize, shnum, shstrndx) =
            (u64_at(0x28), u16_at(0x3a), u16_at(0x3c), u16_at(0x3e));
        let header = |i: usize| shoff + i * shentsize;
        let names = u64_at(header(shstrndx) + 0x18);
        for i in 0..shnum {
            let h = header(i);
            let name_at = names + u32_at(elf, h) as usize;
            let name = &elf[name_at..];
            let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(0)];
            if name == want.as_bytes() {
                let (off, size) = (u64_at(h + 0x18), u64_at(h + 0x20));
                return elf
                    .get(off..off + size)
                    .ok_or(format!("{want} past the end"));
            }
        }
        Err(format!("no {want} section"))
    };
    let types = Types::parse(section(".BTF")?)?;
    // .BTF.ext: its header, then the CO-RE relocations' part: a record size,
    // then per program section its name, a count and the records (insn
    // offset, root type id, access string, kind).
    let ext = section(".BTF.ext")?;
    let hdr_len = u32_at(ext, 4) as usize;
    let (off, len) = (u32_at(ext, 24) as usize, u32_at(ext, 28) as usize);
    let relos = ext
        .get(hdr_len + off..hdr_len + off + len)
        .ok_or("CO-RE relocations past the end")?;
    let rec_size = u32_at(relos, 0) as usize;
    let (mut roots, mut kinds, mut at) = (std::collections::BTreeSet::new(), 0u32, 4);
    while at + 8 <= relos.len() {
        let count = u32_at(relos, at + 4) as usize;
        at += 8;
        for _ in 0..count {
            let name = types.name(u32_at(relos, at + 4));
            roots.insert(String::from_utf8_lossy(name).into_owned());
            kinds |= 1 << u32_at(relos, at + 12);
            at += rec_size;
        }
    }
    Ok(format!(
        "/// The types reflex.bpf.c's CO-RE relocations are relative to, by name.\n\
         pub const CORE_ROOTS: &[&str] = &{:?};\n\
         /// Its kinds of CO-RE relocation (enum bpf_core_relo_kind), one bit each.\n\
         pub const CORE_RELO_KINDS: u32 = {kinds:#x};\n",
        roots.iter().collect::<Vec<_>>()
    ))
}

/// `REFLEX_CLANG` if set; otherwise the first clang on PATH that is new enough,
/// preferring Debian's versioned names.
fn find_clang() -> PathBuf {
    if let Some(c) = env::var_os("REFLEX_CLANG") {
        return c.into();
    }
    let candidates = ["clang-19", "clang"]
        .into_iter()
        .map(String::from)
        .chain((MIN_CLANG..=22).rev().map(|v| format!("clang-{v}")));
    let mut seen = Vec::new();
    for name in candidates {
        let Ok(out) = Command::new(&name).arg("--version").output() else {
            continue;
        };
        let text = String::from_utf8_lossy(&out.stdout);
        let major = text
            .split("version ")
            .nth(1)
            .and_then(|v| v.split('.').next())
            .and_then(|v| v.trim().parse::<u32>().ok());
        match major {
            Some(m) if m >= MIN_CLANG => return name.into(),
            Some(m) => seen.push(format!("{name} ({m})")),
            None => seen.push(name),
        }
    }
    panic!(
        "no clang >= {MIN_CLANG} found (saw: {}). Install one: `apt-get install clang-19`, \
         or point REFLEX_CLANG at it",
        if seen.is_empty() {
            "none".into()
        } else {
            seen.join(", ")
        }
    );
}
