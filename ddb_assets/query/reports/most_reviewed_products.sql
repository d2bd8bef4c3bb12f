-- Products with the most reviews, with their average rating.
SELECT product_id, MAX(product_title) AS product_title, MAX(product_category) AS product_category,
       COUNT(*) AS reviews, ROUND(AVG(star_rating), 2) AS average_stars
FROM {table}
GROUP BY product_id
ORDER BY reviews DESC, product_id
LIMIT 100
