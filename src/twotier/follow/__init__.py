"""The follower: the database's own change log turned into cache invalidations.

Write-through keeps the cache fresh for the writes a live twotier process makes. The
follower makes it honest about every other write — another service, an operator's SQL, a
writer that died before its write-through — by reading what the database committed, in
order, and invalidating what each change makes stale exactly as a write-through would
(``ResourcePolicy.changed``). See docs/guarantees.md and docs/operations.md.

- ``changes``: what a change log yields (row changes, batched by transaction, with the
  position after them) and the errors it raises;
- ``binlog``: MySQL, MariaDB and Aurora MySQL's binary log (ROW format);
- ``follower``: one follower per database and cache namespace (a lease in the cache), its
  position kept in the cache beside the entries it is about.
"""
