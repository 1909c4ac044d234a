-- Claims walk the partial index of unfinished items; every finished item leaves a dead entry
-- there until vacuum. Vacuum this hot queue table early (1% of rows rather than 20%), so claim
-- latency stays flat while a large run drains.
alter table internal.publish_run_items set (
  autovacuum_vacuum_scale_factor = 0.01,
  autovacuum_vacuum_threshold = 1000,
  autovacuum_analyze_scale_factor = 0.02
);
