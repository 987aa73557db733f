# frozen_string_literal: true

require "set"

module Bookshop
  # A shelf of books.
  class Shelf < Base
    def initialize(name)
      @name = name
      @books = []
    end

    def add(book, position = 0, *tags, force: false, **options, &on_added)
      raise ArgumentError, "no book" if book.nil?

      @books.insert(position, book)
    end

    # Already documented: not a task.
    def documented
      @books.size
    end

    def self.from_titles(*titles)
      new(titles.join(", "))
    end

    def available?(title)
      @books.any? { |book| book.title == title }
    end

    def each_title
      @books.each { |book| yield book.title }
    end

    def clear
      @books = []
    end

    def fetch(index)
      raise IndexError.new("no book at #{index}") if index >= @books.size

      @books.fetch(index)
    end

    class << self
      def registry
        @registry ||= {}
      end
    end

    def outer
      def inner
        nil
      end
    end

    def internals # :nodoc:
      @books
    end

    def secret
      @books
    end
    private :secret

    private def quiet
      nil
    end

    private

    def hidden
      @books
    end
  end

  def self.version = "1.0"
end

def top_level(value)
  value
end
