//! `kelp sql` / `kelp stats` set glibc's heap up before any thread starts (src/heap.rs): one
//! arena for every thread, a heap that grows in large steps and is asked for transparent huge
//! pages. This runs without the test harness so that, as in `kelp`, the main thread tunes the heap
//! before other threads exist; it then checks where a query's large buffers land.

// A harness-less test: clippy's allowances for #[test] functions do not reach its `main`.
#![allow(clippy::expect_used, clippy::unwrap_used)]

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn main() {
    let thp = std::path::Path::new("/sys/kernel/mm/transparent_hugepage").exists();
    let asked = kelp_cli::heap::tune_for_query();
    assert_eq!(
        asked, thp,
        "huge pages asked: {asked}, kernel has THP: {thp}"
    );

    // A hash table's worth of memory from the main thread and from two worker threads, as
    // DataFusion's partitions allocate it.
    let main_buf = vec![1u8; 48 << 20];
    let workers: Vec<Vec<u8>> = (0..2)
        .map(|i| std::thread::spawn(move || vec![i as u8 + 2; 24 << 20]))
        .map(|h| h.join().expect("worker thread"))
        .collect();

    let smaps = std::fs::read_to_string("/proc/self/smaps").expect("reading /proc/self/smaps");
    let vmas = parse_smaps(&smaps);
    for (name, buf) in std::iter::once(("main thread", &main_buf))
        .chain(workers.iter().map(|b| ("worker thread", b)))
    {
        let at = buf.as_ptr() as usize;
        let vma = vmas
            .iter()
            .find(|v| v.start <= at && at < v.end)
            .unwrap_or_else(|| panic!("{name}'s buffer at {at:#x} is in no mapping"));
        assert_eq!(
            vma.name, "[heap]",
            "{name}'s {} MiB buffer should come from the one shared heap, not its own mapping ({vma:?})",
            buf.len() >> 20
        );
        if thp {
            assert!(
                vma.flags.split_whitespace().any(|f| f == "hg"),
                "{name}'s buffer lies in a heap region not asked for huge pages ({vma:?})"
            );
        }
        assert!(
            buf.iter().all(|&b| b == buf[0]),
            "{name}'s buffer holds what was written"
        );
    }
    println!("query heap: 3 buffers in the huge-page heap (kernel THP: {thp})");
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn main() {
    assert!(
        !kelp_cli::heap::tune_for_query(),
        "only glibc on Linux is tuned"
    );
}

#[derive(Debug)]
#[allow(dead_code)]
struct Vma {
    start: usize,
    end: usize,
    name: String,
    flags: String,
}

/// The mappings of /proc/self/smaps: address range, name and `VmFlags`.
#[allow(dead_code)]
fn parse_smaps(text: &str) -> Vec<Vma> {
    let mut out: Vec<Vma> = Vec::new();
    for line in text.lines() {
        if let Some(flags) = line.strip_prefix("VmFlags:") {
            if let Some(last) = out.last_mut() {
                last.flags = flags.trim().to_string();
            }
            continue;
        }
        let mut parts = line.split_whitespace();
        let Some(range) = parts.next() else { continue };
        let Some((a, b)) = range.split_once('-') else {
            continue;
        };
        let (Ok(start), Ok(end)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16))
        else {
            continue;
        };
        let name = parts.nth(4).unwrap_or("").to_string();
        out.push(Vma {
            start,
            end,
            name,
            flags: String::new(),
        });
    }
    out
}
