package bookshop;

import java.util.ArrayList;
import java.util.List;

/** Shelves of books. */
public class Shelf {
    private final List<String> books = new ArrayList<>();

    public Shelf(String name) {
        books.add(name);
    }

    public int add(String title, int position) throws IllegalStateException {
        if (title == null) {
            throw new IllegalArgumentException("no title");
        }
        books.add(position, title);
        return books.size();
    }

    public List<String> find(String title) {
        return find(title, 10);
    }

    public List<String> find(String title, int limit) {
        return books.subList(0, Math.min(limit, books.size()));
    }

    public static Shelf of(String... titles) {
        return new Shelf(String.join(", ", titles));
    }

    /** Already documented: not a task. */
    public void clear() {
        books.clear();
    }

    @Override
    public String toString() {
        return books.toString();
    }

    protected void sort() {
        books.sort(null);
    }

    void packagePrivate() {}

    private void secret() {}

    public Runnable printer() {
        return new Runnable() {
            public void run() {
                System.out.println(books);
            }
        };
    }

    public interface Listener {
        void added(String title);
    }

    private static class Hidden {
        public void invisible() {}
    }
}

class PackagePrivate {
    public void notPublic() {}
}
