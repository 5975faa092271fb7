-- After a cache crash a sequence number can be used again in the same epoch: key dead
-- letters by the writing call too, so a second one is kept, not dropped as a duplicate.
ALTER TABLE outbox_dead_letters DROP CONSTRAINT outbox_dead_letters_pkey,
    ADD PRIMARY KEY (domain, cache_epoch, seq, request_id);
