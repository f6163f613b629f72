-- Whether an agent was enrolled (it holds a certificate naming its id). Such an agent connects
-- only with that certificate: an agent authenticated by token cannot take its row by name.
ALTER TABLE agents ADD COLUMN enrolled BOOLEAN NOT NULL DEFAULT false;
