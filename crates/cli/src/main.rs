//! `under8k`: the user-facing command of the under8k workspace (see the library for its code).

// Training allocates and frees the same large buffers every batch; mimalloc reuses them where
// the system allocator returns them to the OS and faults fresh zeroed pages back in.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    under8k_cli::main()
}
