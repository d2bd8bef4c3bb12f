-- Customers who wrote the most reviews.
SELECT customer_id, COUNT(*) AS reviews, ROUND(AVG(star_rating), 2) AS average_stars
FROM {table}
GROUP BY customer_id
ORDER BY reviews DESC, customer_id
LIMIT 100
