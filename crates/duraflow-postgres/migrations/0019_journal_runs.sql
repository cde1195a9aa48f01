-- duraflow PostgreSQL schema, version 19: a journal's rows are merged into runs from time to
-- time (`ops/commit/runs.rs`). A cold turn reads its instance's whole journal, and a workflow
-- of 10,000 steps left 10,001 rows spread over thousands of heap pages, whose read was most of
-- the server's part of the turn. A merged row is an ordinary row of `span` events, one run of
-- their binary encodings, each behind its length, as `Event::encode_binary_run` writes them;
-- a row of one event holds its encoding alone, so merging puts its length in front of it.
--
-- `event_length(n)`: the length `n` as the binary journal writes it, 7 bits a byte, low bits
-- first, the high bit set on every byte but the last. A `bytea` is at most 1 GiB, so five
-- bytes at most (shifted as `bigint`: PostgreSQL shifts an `integer` by the count modulo 32).

CREATE FUNCTION event_length(n integer) RETURNS bytea
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$
    SELECT string_agg(
               set_byte('\x00'::bytea, 0,
                        ((n::bigint >> (7 * i)) & 127)::integer
                        | CASE WHEN (n::bigint >> (7 * (i + 1))) > 0 THEN 128 ELSE 0 END),
               ''::bytea ORDER BY i)
      FROM generate_series(0, CASE WHEN n < 128 THEN 0
                                   WHEN n < 16384 THEN 1
                                   WHEN n < 2097152 THEN 2
                                   WHEN n < 268435456 THEN 3
                                   ELSE 4 END) AS i
$$;
