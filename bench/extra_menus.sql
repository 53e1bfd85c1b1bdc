-- Ten more coffees, so the benchmarks have the 20 menus issue 5 asks for.
INSERT INTO menus (id, name, price) VALUES
    ('0192f0a0-0000-7000-8000-0000000000b1', 'Bench Affogato', 6000),
    ('0192f0a0-0000-7000-8000-0000000000b2', 'Bench Cortado', 4300),
    ('0192f0a0-0000-7000-8000-0000000000b3', 'Bench Dalgona', 5200),
    ('0192f0a0-0000-7000-8000-0000000000b4', 'Bench Doppio', 3800),
    ('0192f0a0-0000-7000-8000-0000000000b5', 'Bench Irish', 6500),
    ('0192f0a0-0000-7000-8000-0000000000b6', 'Bench Lungo', 3700),
    ('0192f0a0-0000-7000-8000-0000000000b7', 'Bench Macchiato', 4000),
    ('0192f0a0-0000-7000-8000-0000000000b8', 'Bench Red Eye', 4600),
    ('0192f0a0-0000-7000-8000-0000000000b9', 'Bench Ristretto', 3600),
    ('0192f0a0-0000-7000-8000-0000000000ba', 'Bench Vienna', 5400)
ON CONFLICT DO NOTHING;
