-- duraflow PostgreSQL schema, version 20: two functions for the commit of one statement
-- (`ops/commit/one_statement.rs`): `instance_inboxes(ids)`, the inboxes of instances read with
-- a snapshot of their own, and `commit_failed(detail)`, which fails the statement.
--
-- A commit of one statement locks its instance rows and computes their due times from their
-- inboxes in the same statement. A statement reads the snapshot taken when it began, so a
-- message whose sender held an instance's row (`FOR KEY SHARE`) and committed while the
-- statement waited for its lock would be missing from that read, and the instance left not
-- due with a message in its inbox. A `VOLATILE` PL/pgSQL function takes a new snapshot for each
-- query it runs (in `READ COMMITTED`), which sees every sender that committed before the locks
-- were granted. PL/pgSQL, not SQL: a SQL function could be inlined into the calling query, and
-- its plan is not kept from one run of the statement to the next.

CREATE FUNCTION instance_inboxes(ids text[])
RETURNS TABLE (instance_id text, visible_at bigint, id bigint)
LANGUAGE plpgsql VOLATILE STRICT
AS $$
BEGIN
    RETURN QUERY SELECT m.instance_id, m.visible_at, m.id
                   FROM messages m WHERE m.instance_id = ANY(ids);
END
$$;

-- A commit of one statement commits by itself: a check it makes after writing (that it updated
-- every instance row it committed) must fail the statement, which rolls it back, rather than
-- be made by the caller once it has committed.
CREATE FUNCTION commit_failed(detail text) RETURNS boolean
LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
    RAISE EXCEPTION 'duraflow: %; nothing was written. This is a bug in duraflow, please report it', detail
        USING ERRCODE = 'XX000';
END
$$;
