-- Average stars per product per year, for products with at least 20 reviews.
WITH busy AS (
    SELECT product_id FROM {table} GROUP BY product_id HAVING COUNT(*) >= 20
)
SELECT r.product_id, MAX(r.product_title) AS product_title, r.year, COUNT(*) AS reviews,
       ROUND(AVG(r.star_rating), 2) AS average_stars
FROM {table} r JOIN busy b ON r.product_id = b.product_id
GROUP BY r.product_id, r.year
ORDER BY r.product_id, r.year
