-- The history database of the contract's read models (shared/contract "Read models").
CREATE DATABASE IF NOT EXISTS fleet
