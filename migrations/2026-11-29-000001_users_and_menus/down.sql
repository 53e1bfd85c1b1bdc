DROP TABLE menus;
DROP TABLE users;
