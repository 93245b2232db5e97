"""``/proc`` facts shared by the cold sandbox (bubblewrap) and the warm child's own mounts."""

from __future__ import annotations

# /proc files only root may read (physical page maps, kernel allocator and timer state,
# the host's keyrings): hidden from a root worker's sandbox, whose uid 0 is the host's.
ROOT_ONLY_PROC_FILES = (
    "kpagecount",
    "kpageflags",
    "kpagecgroup",
    "slabinfo",
    "timer_list",
    "vmallocinfo",
    "pagetypeinfo",
    "keys",
    "key-users",
    "kallsyms",
    "sched_debug",
)
