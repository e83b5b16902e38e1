-- The log reads of event_store::log, event_store::load and event_store::checkpoints, as the
-- services send them, planned generically (as a statement cached after five executions is):
--   psql -d <db> -v type=SupportTicket -v tx=<checkpoint tx> -v pos=<checkpoint position> \
--        -f scripts/explain-log-reads.sql
-- `type` is a type with no event after the checkpoint (an idle projection's), `tx`/`pos` the
-- checkpoint. Run it for a type with no events at all and for one with many before the
-- checkpoint (a projection at the head of its type): a read that starts at the type's first
-- entry rather than at the checkpoint shows as hundreds of buffers only there.
-- docs/PERFORMANCE.md shows the output on a log of 1,000,000 other events.
\set ON_ERROR_STOP 1
SET plan_cache_mode = force_generic_plan;
SET jit = off;
\pset pager off

\echo '== read_after, one type (a projection batch)'
PREPARE read_typed(text, text, text, bigint, bigint, bigint) AS
SELECT tx_id, global_position, event_id, aggregate_type, aggregate_id, sequence, event_type,
       event_version, payload, metadata, recorded_at
  FROM (SELECT page.*, sum(octet_length(page.payload)) OVER
                (ORDER BY page.tx_id, page.global_position
                 ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS sent_before
          FROM (SELECT tx_id::text::bigint, global_position, event_id, aggregate_type,
                       aggregate_id, sequence, event_type, event_version, payload::text,
                       metadata, recorded_at
                  FROM events
                 WHERE aggregate_type = $1
                   AND (aggregate_type, tx_id, global_position) > ($2, $3::xid8, $4)
                   AND (tx_id, global_position) > ($3::xid8, $4)
                   AND tx_id < pg_snapshot_xmin(pg_current_snapshot())
                 ORDER BY events.aggregate_type, events.tx_id, events.global_position
                 LIMIT $5) AS page) AS sized
 WHERE COALESCE(sent_before, 0) < $6 ORDER BY tx_id, global_position;
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING OFF, SUMMARY ON)
EXECUTE read_typed(:'type', :'type', :'tx', :pos, 500, 8388608);

\echo '== read_after, two types (UNION ALL of one branch per type)'
PREPARE read_two(text, text, text, bigint, bigint, text, text, text, bigint, bigint, bigint, bigint) AS
SELECT * FROM (
  (SELECT tx_id::text::bigint, global_position FROM events
    WHERE aggregate_type = $1 AND (aggregate_type, tx_id, global_position) > ($2, $3::xid8, $4)
      AND (tx_id, global_position) > ($3::xid8, $4)
      AND tx_id < pg_snapshot_xmin(pg_current_snapshot())
    ORDER BY events.aggregate_type, events.tx_id, events.global_position LIMIT $5)
  UNION ALL
  (SELECT tx_id::text::bigint, global_position FROM events
    WHERE aggregate_type = $6 AND (aggregate_type, tx_id, global_position) > ($7, $8::xid8, $9)
      AND (tx_id, global_position) > ($8::xid8, $9)
      AND tx_id < pg_snapshot_xmin(pg_current_snapshot())
    ORDER BY events.aggregate_type, events.tx_id, events.global_position LIMIT $10)
) AS e ORDER BY e.tx_id, e.global_position LIMIT $11;
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING OFF, SUMMARY ON)
EXECUTE read_two(:'type', :'type', :'tx', :pos, 500, 'Post', 'Post', :'tx', :pos, 500, 500, 0);

\echo '== read_after, no type (the relay, the export, the audit trail)'
PREPARE read_all(text, bigint, bigint) AS
SELECT tx_id::text::bigint, global_position FROM events
 WHERE (tx_id, global_position) > ($1::xid8, $2)
   AND tx_id < pg_snapshot_xmin(pg_current_snapshot())
 ORDER BY events.tx_id, events.global_position LIMIT $3;
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING OFF, SUMMARY ON)
EXECUTE read_all(:'tx', :pos, 500);

\echo '== read_after, audit filters: one stream id (leads: events_aggregate_id_idx)'
PREPARE audit_id(text, text, text, bigint, text) AS
SELECT tx_id::text::bigint, global_position FROM events
 WHERE aggregate_id = $1 AND (aggregate_id, tx_id, global_position) > ($2, $3::xid8, $4)
   AND (tx_id, global_position) > ($3::xid8, $4)
   AND tx_id < pg_snapshot_xmin(pg_current_snapshot()) AND aggregate_type = $5
 ORDER BY events.aggregate_id, events.tx_id, events.global_position LIMIT 101;
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING OFF, SUMMARY ON)
EXECUTE audit_id('nothing-here', 'nothing-here', '0', 0, :'type');

\echo '== read_after, audit filters: one event type (leads: events_event_type_idx)'
PREPARE audit_event_type(text, text, text, bigint) AS
SELECT tx_id::text::bigint, global_position FROM events
 WHERE event_type = $1 AND (event_type, tx_id, global_position) > ($2, $3::xid8, $4)
   AND (tx_id, global_position) > ($3::xid8, $4)
   AND tx_id < pg_snapshot_xmin(pg_current_snapshot())
 ORDER BY events.event_type, events.tx_id, events.global_position LIMIT 101;
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING OFF, SUMMARY ON)
EXECUTE audit_event_type('SupportTicketOpened', 'SupportTicketOpened', '0', 0);

\echo '== read_after, audit filters: one actor (leads: events_actor_idx)'
PREPARE audit_actor(text, text, text, bigint) AS
SELECT tx_id::text::bigint, global_position FROM events
 WHERE (metadata ->> 'actor') = $1
   AND ((metadata ->> 'actor'), tx_id, global_position) > ($2, $3::xid8, $4)
   AND (tx_id, global_position) > ($3::xid8, $4)
   AND tx_id < pg_snapshot_xmin(pg_current_snapshot())
 ORDER BY (events.metadata ->> 'actor'), events.tx_id, events.global_position LIMIT 101;
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING OFF, SUMMARY ON)
EXECUTE audit_actor('nobody', 'nobody', '0', 0);

\echo '== committed_beyond / any_between without a bound, one type (the held-back check)'
PREPARE beyond_typed(text, text, text, bigint) AS
SELECT 1 FROM events
 WHERE aggregate_type = $1 AND (aggregate_type, tx_id, global_position) > ($2, $3::xid8, $4)
   AND (tx_id, global_position) > ($3::xid8, $4)
 ORDER BY events.aggregate_type, events.tx_id, events.global_position LIMIT 1;
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING OFF, SUMMARY ON)
EXECUTE beyond_typed(:'type', :'type', :'tx', :pos);

\echo '== last_committed (the idle skip: the newest event below the horizon)'
PREPARE last_committed AS
SELECT tx_id::text::bigint, global_position FROM events
 WHERE tx_id < pg_snapshot_xmin(pg_current_snapshot())
 ORDER BY events.tx_id DESC, events.global_position DESC LIMIT 1;
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING OFF, SUMMARY ON) EXECUTE last_committed;

\echo '== any_between up to the head, one type (the idle skip: nothing of mine in between)'
PREPARE between_typed(text, text, text, bigint, text, text, bigint) AS
SELECT 1 FROM events
 WHERE aggregate_type = $1 AND (aggregate_type, tx_id, global_position) > ($2, $3::xid8, $4)
   AND (tx_id, global_position) > ($3::xid8, $4)
   AND (aggregate_type, tx_id, global_position) <= ($5, $6::xid8, $7)
 ORDER BY events.aggregate_type, events.tx_id, events.global_position LIMIT 1;
SELECT tx_id::text AS head_tx, global_position AS head_pos FROM events
 ORDER BY tx_id DESC, global_position DESC LIMIT 1 \gset
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING OFF, SUMMARY ON)
EXECUTE between_typed(:'type', :'type', :'tx', :pos, :'type', :'head_tx', :head_pos);

\echo '== settled_without (query API: a consistency token from another resource)'
PREPARE settled(text, bigint, text, bigint, text) AS
SELECT $3::text::xid8 < pg_snapshot_xmin(pg_current_snapshot())
   AND (SELECT 1 FROM events
         WHERE aggregate_type = $5
           AND (aggregate_type, tx_id, global_position) > ($5, $1::text::xid8, $2)
           AND (tx_id, global_position) > ($1::text::xid8, $2)
           AND (aggregate_type, tx_id, global_position) <= ($5, $3::text::xid8, $4)
         ORDER BY events.aggregate_type, events.tx_id, events.global_position
         LIMIT 1) IS NULL;
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING OFF, SUMMARY ON)
EXECUTE settled(:'tx', :pos, :'head_tx', :head_pos, :'type');

\echo '== load: the events of one stream after its snapshot'
PREPARE load_after(text, text, bigint, bigint) AS
SELECT sequence, event_type, event_version, payload, metadata FROM events
 WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence > $3 ORDER BY sequence LIMIT $4;
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING OFF, SUMMARY ON)
EXECUTE load_after('Project', 'long', 99990, 1000);

\echo '== revision (status reports)'
PREPARE revision(text, text) AS
SELECT coalesce(max(sequence), 0) FROM events WHERE aggregate_type = $1 AND aggregate_id = $2;
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING OFF, SUMMARY ON)
EXECUTE revision('Project', 'long');

\echo '== checkpoints::statuses (GET /projections lag), the checkpoint of every projection'
PREPARE statuses(text[], text[]) AS
WITH sources AS (SELECT * FROM unnest($1::text[], $2::text[]) AS s(name, aggregate_type))
SELECT c.name, lag.lag_events
  FROM public.projection_checkpoints c
 CROSS JOIN LATERAL (
       SELECT count(*) AS lag_events, min(behind.recorded_at) AS oldest
         FROM (SELECT e.recorded_at FROM sources s
                CROSS JOIN LATERAL (
                      SELECT e.recorded_at FROM events e
                       WHERE e.aggregate_type = s.aggregate_type
                         AND (e.aggregate_type, e.tx_id, e.global_position)
                             > (s.aggregate_type, c.tx_id::text::xid8, c.position)
                         AND (e.tx_id, e.global_position) > (c.tx_id::text::xid8, c.position)
                       OFFSET 0) e
                WHERE s.name = c.name
               UNION ALL
               SELECT e.recorded_at FROM events e
                WHERE NOT EXISTS (SELECT 1 FROM sources s WHERE s.name = c.name)
                  AND (e.tx_id, e.global_position) > (c.tx_id::text::xid8, c.position)
              ) behind) lag
 ORDER BY c.name;
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING OFF, SUMMARY ON)
EXECUTE statuses(ARRAY['support_tickets'], ARRAY[:'type']);
-- (the checkpoints: support_tickets at the given checkpoint, relay at the head)
